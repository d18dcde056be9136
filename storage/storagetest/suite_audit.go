package storagetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// auditAt returns an event of type typ on target at t.
func auditAt(typ, target string, t time.Time) *storage.AuditEvent {
	return &storage.AuditEvent{Time: t, Type: typ, Actor: "admin-api", Source: "192.0.2.1", RequestID: "rid-" + target,
		Target: target, Outcome: "success", Details: map[string]string{"k": target}}
}

func mustAppend(t *testing.T, ctx context.Context, s storage.Store, events ...*storage.AuditEvent) {
	t.Helper()
	for _, e := range events {
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatalf("AppendAudit(%s %s): %v", e.Type, e.Target, err)
		}
	}
}

// ids lists the events' IDs, to compare pages in order.
func ids(events []storage.AuditEvent) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// listAll pages through ListAudit with limit per page and returns the pages'
// IDs in order.
func listAll(t *testing.T, ctx context.Context, s storage.Store, f storage.AuditFilter, limit int) []int64 {
	t.Helper()
	var (
		all   []int64
		after *storage.AuditCursor
	)
	for range 100 {
		page, err := s.ListAudit(ctx, f, after, limit)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		if len(page) > limit {
			t.Fatalf("ListAudit returned %d events, limit %d", len(page), limit)
		}
		all = append(all, ids(page)...)
		if len(page) < limit {
			return all
		}
		last := page[len(page)-1]
		after = &storage.AuditCursor{Time: last.Time, ID: last.ID}
	}
	t.Fatal("ListAudit never ran out of pages")
	return nil
}

func testAudit(t *testing.T, su suite) {
	su.run(t, "AppendRoundTrip", func(t *testing.T, ctx context.Context, s storage.Store) {
		before := time.Now()
		e := &storage.AuditEvent{Type: "key.revoked", Actor: "cli", Source: "2001:db8::1", RequestID: "req-1",
			Target: "kid-1", Outcome: "success", Details: map[string]string{"state": "active", "quote": `"x"`}}
		mustAppend(t, ctx, s, e)
		checkRecent(t, "Time", e.Time, before, time.Now())
		if e.ID == 0 {
			t.Fatal("ID not set")
		}
		// An event with no details reads back with an empty map.
		bare := &storage.AuditEvent{Type: "client.deleted", Outcome: "failure"}
		mustAppend(t, ctx, s, bare)
		if bare.ID <= e.ID {
			t.Errorf("IDs %d then %d, want increasing", e.ID, bare.ID)
		}
		got, err := s.ListAudit(ctx, storage.AuditFilter{}, nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[1].ID != e.ID {
			t.Fatalf("ListAudit = %+v, want the two events, newest first", got)
		}
		g := got[1]
		if g.Type != e.Type || g.Actor != e.Actor || g.Source != e.Source || g.RequestID != e.RequestID ||
			g.Target != e.Target || g.Outcome != e.Outcome || !g.Time.Equal(e.Time) || !maps.Equal(g.Details, e.Details) {
			t.Errorf("read back %+v, want %+v", g, *e)
		}
		if got[0].Details == nil || len(got[0].Details) != 0 {
			t.Errorf("details of an event appended without = %#v, want empty", got[0].Details)
		}
		// The caller's details map is copied, not kept.
		e.Details["state"] = "changed"
		if again, _ := s.ListAudit(ctx, storage.AuditFilter{Target: "kid-1"}, nil, 1); len(again) != 1 || again[0].Details["state"] != "active" {
			t.Errorf("stored details changed with the caller's map: %+v", again)
		}
	})

	// Pages are newest first by (Time, ID): events stamped the same instant
	// are ordered by ID, so a cursor never skips or repeats one.
	su.run(t, "PagesNewestFirst", func(t *testing.T, ctx context.Context, s storage.Store) {
		base := usec(time.Now().Add(-time.Hour))
		var events []*storage.AuditEvent
		for i, off := range []int{0, 1, 1, 1, 2, 3, 3} {
			events = append(events, auditAt("client.created", fmt.Sprint("c", i), base.Add(time.Duration(off)*time.Second)))
		}
		// Appended out of time order: the list follows Time, then ID.
		mustAppend(t, ctx, s, events[4], events[0], events[1], events[2], events[3], events[6], events[5])
		want := ids(sortedNewestFirst(events))
		if want[0] != events[5].ID || want[6] != events[0].ID {
			t.Fatalf("test setup: order %v", want)
		}
		for _, limit := range []int{1, 2, 3, 7, 100} {
			if got := listAll(t, ctx, s, storage.AuditFilter{}, limit); !slices.Equal(got, want) {
				t.Errorf("limit %d: pages %v, want %v", limit, got, want)
			}
		}
		// New events (newer than the cursor) do not disturb a walk in progress.
		first, err := s.ListAudit(ctx, storage.AuditFilter{}, nil, 3)
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, ctx, s, auditAt("client.created", "late", time.Now()))
		last := first[2]
		rest, err := s.ListAudit(ctx, storage.AuditFilter{}, &storage.AuditCursor{Time: last.Time, ID: last.ID}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if got := append(ids(first), ids(rest)...); !slices.Equal(got, want) {
			t.Errorf("walk with an insert between pages: %v, want %v", got, want)
		}
	})

	su.run(t, "Filters", func(t *testing.T, ctx context.Context, s storage.Store) {
		base := usec(time.Now().Add(-time.Hour))
		a0 := auditAt("client.created", "a", base)
		a1 := auditAt("client.updated", "a", base.Add(time.Minute))
		b1 := auditAt("client.updated", "b", base.Add(time.Minute))
		a2 := auditAt("client.deleted", "a", base.Add(2*time.Minute))
		b3 := auditAt("client.updated", "b", base.Add(3*time.Minute))
		mustAppend(t, ctx, s, a0, a1, b1, a2, b3)
		for _, tc := range []struct {
			name string
			f    storage.AuditFilter
			want []*storage.AuditEvent
		}{
			{"type", storage.AuditFilter{Type: "client.updated"}, []*storage.AuditEvent{b3, b1, a1}},
			{"target", storage.AuditFilter{Target: "a"}, []*storage.AuditEvent{a2, a1, a0}},
			{"type and target", storage.AuditFilter{Type: "client.updated", Target: "b"}, []*storage.AuditEvent{b3, b1}},
			// Since is inclusive, Until exclusive.
			{"since", storage.AuditFilter{Since: base.Add(2 * time.Minute)}, []*storage.AuditEvent{b3, a2}},
			{"until", storage.AuditFilter{Until: base.Add(time.Minute)}, []*storage.AuditEvent{a0}},
			{"range", storage.AuditFilter{Since: base.Add(time.Minute), Until: base.Add(3 * time.Minute)}, []*storage.AuditEvent{a2, b1, a1}},
			{"all", storage.AuditFilter{Target: "b", Since: base, Until: base.Add(3 * time.Minute)}, []*storage.AuditEvent{b1}},
			{"no match", storage.AuditFilter{Type: "key.rotated"}, nil},
		} {
			want := ids(sortedNewestFirst(tc.want))
			for _, limit := range []int{1, 100} {
				if got := listAll(t, ctx, s, tc.f, limit); !slices.Equal(got, want) {
					t.Errorf("%s, limit %d: %v, want %v", tc.name, limit, got, want)
				}
			}
		}
	})

	// An event stands even when the transaction in the context is rolled
	// back: a failed action is recorded too.
	su.run(t, "OutsideTransactions", func(t *testing.T, ctx context.Context, s storage.Store) {
		tctx, err := s.BeginTX(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, tctx, s, auditAt("client.created", "x", time.Time{}))
		if err := s.Rollback(tctx); err != nil {
			t.Fatal(err)
		}
		if got := listAll(t, ctx, s, storage.AuditFilter{}, 10); len(got) != 1 {
			t.Errorf("after rollback: %v, want the event kept", got)
		}
	})

	su.run(t, "ConcurrentAppends", func(t *testing.T, ctx context.Context, s storage.Store) {
		const n = 20
		errs := parallel(n, func(i int) error {
			return s.AppendAudit(ctx, auditAt("auth.lockout", fmt.Sprint("c", i), time.Time{}))
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("append %d: %v", i, err)
			}
		}
		got := listAll(t, ctx, s, storage.AuditFilter{}, 7)
		slices.Sort(got)
		if len(slices.Compact(got)) != n {
			t.Errorf("listed %d distinct events, want %d", len(got), n)
		}
	})

	// The purge deletes only events older than the cutoff, oldest first, at
	// most batch per call.
	su.run(t, "Purge", func(t *testing.T, ctx context.Context, s storage.Store) {
		now := usec(time.Now())
		var old []*storage.AuditEvent
		for i := range 5 {
			old = append(old, auditAt("key.rotated", fmt.Sprint("old", i), now.Add(-time.Duration(10-i)*time.Hour)))
		}
		keep := auditAt("key.rotated", "new", now.Add(-time.Minute))
		edge := auditAt("key.rotated", "edge", now.Add(-time.Hour))
		mustAppend(t, ctx, s, old[3], old[0], keep, old[4], edge, old[1], old[2])
		cutoff := now.Add(-time.Hour) // edge is not before it: kept
		n, err := s.PurgeAuditBefore(ctx, cutoff, 2)
		if err != nil || n != 2 {
			t.Fatalf("first purge: %d, %v; want 2", n, err)
		}
		left := listAll(t, ctx, s, storage.AuditFilter{}, 100)
		if want := ids([]storage.AuditEvent{*keep, *edge, *old[4], *old[3], *old[2]}); !slices.Equal(left, want) {
			t.Errorf("after purging 2: %v, want the two oldest gone: %v", left, want)
		}
		for _, want := range []int{2, 1, 0} {
			if n, err := s.PurgeAuditBefore(ctx, cutoff, 2); err != nil || n != want {
				t.Fatalf("purge: %d, %v; want %d", n, err, want)
			}
		}
		if left := listAll(t, ctx, s, storage.AuditFilter{}, 100); !slices.Equal(left, ids([]storage.AuditEvent{*keep, *edge})) {
			t.Errorf("after purging all old events: %v", left)
		}
		if _, err := s.PurgeAuditBefore(ctx, cutoff, 0); err == nil {
			t.Error("PurgeAuditBefore with batch 0 succeeded, want an error")
		}
		if _, err := s.ListAudit(ctx, storage.AuditFilter{}, nil, 0); err == nil {
			t.Error("ListAudit with limit 0 succeeded, want an error")
		}
	})
}

// sortedNewestFirst orders events as ListAudit does.
func sortedNewestFirst(in []*storage.AuditEvent) []storage.AuditEvent {
	out := make([]storage.AuditEvent, len(in))
	for i, e := range in {
		out[i] = *e
	}
	slices.SortFunc(out, func(a, b storage.AuditEvent) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return int(b.ID - a.ID)
	})
	return out
}
