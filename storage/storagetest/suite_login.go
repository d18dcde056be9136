package storagetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// loginFixture is a client, two users and the time a test starts at, to
// build tickets on.
type loginFixture struct {
	client       *storage.Client
	alice, bob   string
	t0           time.Time
	ticketMaxAge time.Duration
}

func newLoginFixture(t *testing.T, ctx context.Context, s storage.Store) loginFixture {
	t.Helper()
	c := mustCreateClient(t, ctx, s, "web")
	alice, _ := mustLink(t, ctx, s, login{appA, "o-alice", "", "user-alice"})
	bob, _ := mustLink(t, ctx, s, login{appA, "o-bob", "", "user-bob"})
	// Microseconds set, nanoseconds not: what a timestamptz keeps exactly.
	t0 := time.Now().UTC().Truncate(time.Microsecond).Add(123 * time.Microsecond)
	return loginFixture{client: c, alice: alice.ID, bob: bob.ID, t0: t0, ticketMaxAge: 5 * time.Minute}
}

// ticket returns a new ticket with every field set to a distinguishable
// value, expiring ticketMaxAge after t0.
func (f loginFixture) ticket(id string) *storage.LoginTicket {
	return &storage.LoginTicket{
		ID:          id,
		BrowserHash: storage.HashKey("browser-cookie-" + id),
		ClientID:    f.client.ID,
		Request:     "response_type=code&client_id=" + f.client.ID + "&state=st-" + id + "&code_challenge=abc",
		Scopes:      []string{"openid", "profile"},
		SourceIP:    "203.0.113.7",
		UserAgent:   "Mozilla/5.0 (test) " + id,
		CreatedAt:   f.t0,
		ExpiresAt:   f.t0.Add(f.ticketMaxAge),
	}
}

func (f loginFixture) mustCreate(t *testing.T, ctx context.Context, s storage.Store, id string) *storage.LoginTicket {
	t.Helper()
	lt := f.ticket(id)
	if err := s.CreateLoginTicket(ctx, lt); err != nil {
		t.Fatalf("CreateLoginTicket(%s): %v", id, err)
	}
	return lt
}

// at is a time after t0 with nanoseconds, which a backend keeps only to
// the microsecond.
func (f loginFixture) at(d time.Duration) time.Time { return f.t0.Add(d + 789*time.Nanosecond) }

// mustScan and mustDecide move a ticket on, failing the test if they cannot.
func (f loginFixture) mustScan(t *testing.T, ctx context.Context, s storage.Store, id, userID string) *storage.LoginTicket {
	t.Helper()
	lt, err := s.ScanLoginTicket(ctx, id, userID, f.at(time.Second))
	if err != nil {
		t.Fatalf("ScanLoginTicket(%s, %s): %v", id, userID, err)
	}
	return lt
}

func (f loginFixture) mustDecide(t *testing.T, ctx context.Context, s storage.Store, id, userID string, to storage.TicketState) *storage.LoginTicket {
	t.Helper()
	lt, err := s.DecideLoginTicket(ctx, id, userID, to, f.at(2*time.Second), f.completeBy())
	if err != nil {
		t.Fatalf("DecideLoginTicket(%s, %s, %s): %v", id, userID, to, err)
	}
	return lt
}

// completeBy is the browser's deadline set by a decision: shorter than the
// ticket's own expiry, so a backend that ignores it is caught.
func (f loginFixture) completeBy() time.Time { return f.t0.Add(time.Minute + 456*time.Microsecond) }

// checkTicket compares every field of a ticket.
func checkTicket(t *testing.T, what string, got, want *storage.LoginTicket) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: ticket is nil, want %+v", what, want)
	}
	g, w := *got, *want
	if !sameStrings(g.Scopes, w.Scopes) {
		t.Errorf("%s: Scopes = %q, want %q", what, g.Scopes, w.Scopes)
	}
	g.Scopes, w.Scopes = nil, nil
	for _, tm := range []struct {
		name      string
		got, want time.Time
	}{
		{"CreatedAt", g.CreatedAt, w.CreatedAt}, {"ExpiresAt", g.ExpiresAt, w.ExpiresAt},
		{"ScannedAt", g.ScannedAt, w.ScannedAt}, {"DecidedAt", g.DecidedAt, w.DecidedAt},
	} {
		if !tm.got.Equal(tm.want) || tm.got.IsZero() != tm.want.IsZero() {
			t.Errorf("%s: %s = %v, want %v", what, tm.name, tm.got, tm.want)
		}
	}
	g.CreatedAt, g.ExpiresAt, g.ScannedAt, g.DecidedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	w.CreatedAt, w.ExpiresAt, w.ScannedAt, w.DecidedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: ticket = %+v, want %+v", what, g, w)
	}
}

// checkStored fails unless the stored ticket is want.
func checkStored(t *testing.T, ctx context.Context, s storage.Store, what string, want *storage.LoginTicket) {
	t.Helper()
	got, err := s.GetLoginTicket(ctx, want.ID)
	if err != nil {
		t.Fatalf("%s: GetLoginTicket: %v", what, err)
	}
	checkTicket(t, what+": stored", got, want)
}

// checkRefused fails unless err is want and, for ErrConflict, the ticket
// came back with it as stored.
func checkRefused(t *testing.T, ctx context.Context, s storage.Store, what string, got *storage.LoginTicket, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
	if !errors.Is(want, storage.ErrConflict) {
		return
	}
	if got == nil {
		t.Fatalf("%s: no ticket with ErrConflict", what)
	}
	stored, gerr := s.GetLoginTicket(ctx, got.ID)
	if gerr != nil {
		t.Fatalf("%s: GetLoginTicket: %v", what, gerr)
	}
	checkTicket(t, what+": ticket returned with ErrConflict", got, stored)
}

func testLogin(t *testing.T, su suite) {
	su.run(t, "RoundTrip", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		lt := f.ticket("t1")
		lt.State, lt.UserID = storage.TicketApproved, f.alice // ignored: a new ticket waits
		if err := s.CreateLoginTicket(ctx, lt); err != nil {
			t.Fatalf("CreateLoginTicket: %v", err)
		}
		want := f.ticket("t1")
		want.State = storage.TicketWaiting
		checkTicket(t, "CreateLoginTicket", lt, want)
		checkStored(t, ctx, s, "created", want)
		// The store keeps its own copy.
		lt.Scopes[0] = "admin"
		got, err := s.GetLoginTicket(ctx, "t1")
		if err != nil {
			t.Fatal(err)
		}
		got.Scopes[1] = "admin"
		checkStored(t, ctx, s, "after the caller's edits", want)
		if _, err := s.GetLoginTicket(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetLoginTicket of an unknown ticket: %v, want ErrNotFound", err)
		}
	})

	su.run(t, "DuplicateID", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		want := f.mustCreate(t, ctx, s, "t1")
		dup := f.ticket("t1")
		dup.BrowserHash = storage.HashKey("another browser")
		if err := s.CreateLoginTicket(ctx, dup); !errors.Is(err, storage.ErrAlreadyExists) {
			t.Fatalf("CreateLoginTicket of a taken ID: %v, want ErrAlreadyExists", err)
		}
		checkStored(t, ctx, s, "after the refused duplicate", want)
	})

	su.run(t, "Scan", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		want := f.mustCreate(t, ctx, s, "t1")
		got := f.mustScan(t, ctx, s, "t1", f.alice)
		want.State, want.UserID, want.ScannedAt = storage.TicketScanned, f.alice, usec(f.at(time.Second))
		checkTicket(t, "ScanLoginTicket", got, want)
		checkStored(t, ctx, s, "scanned", want)

		// The same user again (a retried request): unchanged, no error.
		again, err := s.ScanLoginTicket(ctx, "t1", f.alice, f.at(3*time.Second))
		if err != nil {
			t.Fatalf("ScanLoginTicket by the same user again: %v", err)
		}
		checkTicket(t, "second scan by the same user", again, want)
		got, err = s.ScanLoginTicket(ctx, "t1", f.bob, f.at(3*time.Second))
		checkRefused(t, ctx, s, "ScanLoginTicket by another user", got, err, storage.ErrConflict)
		if got.UserID != f.alice {
			t.Errorf("ticket returned with ErrConflict names user %q, want %q", got.UserID, f.alice)
		}
		checkStored(t, ctx, s, "after the refused scans", want)

		_, err = s.ScanLoginTicket(ctx, "nope", f.alice, f.at(time.Second))
		checkRefused(t, ctx, s, "ScanLoginTicket of an unknown ticket", nil, err, storage.ErrNotFound)

		expired := f.mustCreate(t, ctx, s, "t2")
		_, err = s.ScanLoginTicket(ctx, "t2", f.alice, expired.ExpiresAt)
		checkRefused(t, ctx, s, "ScanLoginTicket at ExpiresAt", nil, err, storage.ErrExpired)
		checkStored(t, ctx, s, "after the expired scan", expired)

		// Once decided, even its own user cannot scan it again.
		f.mustDecide(t, ctx, s, "t1", f.alice, storage.TicketApproved)
		got, err = s.ScanLoginTicket(ctx, "t1", f.alice, f.at(3*time.Second))
		checkRefused(t, ctx, s, "ScanLoginTicket of a decided ticket", got, err, storage.ErrConflict)
	})

	su.run(t, "Decide", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		want := f.mustCreate(t, ctx, s, "t1")
		now := f.at(2 * time.Second)
		got, err := s.DecideLoginTicket(ctx, "t1", f.alice, storage.TicketApproved, now, f.completeBy())
		checkRefused(t, ctx, s, "DecideLoginTicket of a waiting ticket", got, err, storage.ErrConflict)

		f.mustScan(t, ctx, s, "t1", f.alice)
		want.State, want.UserID, want.ScannedAt = storage.TicketScanned, f.alice, usec(f.at(time.Second))
		got, err = s.DecideLoginTicket(ctx, "t1", f.bob, storage.TicketApproved, now, f.completeBy())
		checkRefused(t, ctx, s, "DecideLoginTicket by another user", got, err, storage.ErrConflict)
		if _, err := s.DecideLoginTicket(ctx, "t1", f.alice, storage.TicketConsumed, now, f.completeBy()); err == nil {
			t.Error("DecideLoginTicket to consumed succeeded, want an error")
		}
		checkStored(t, ctx, s, "after the refused decisions", want)

		got = f.mustDecide(t, ctx, s, "t1", f.alice, storage.TicketApproved)
		want.State, want.DecidedAt, want.ExpiresAt = storage.TicketApproved, usec(now), f.completeBy()
		checkTicket(t, "DecideLoginTicket", got, want)
		checkStored(t, ctx, s, "approved", want)

		again, err := s.DecideLoginTicket(ctx, "t1", f.alice, storage.TicketApproved, f.at(3*time.Second), f.completeBy().Add(time.Hour))
		if err != nil {
			t.Fatalf("the same decision again: %v", err)
		}
		checkTicket(t, "the same decision again", again, want)
		got, err = s.DecideLoginTicket(ctx, "t1", f.alice, storage.TicketDenied, f.at(3*time.Second), f.completeBy())
		checkRefused(t, ctx, s, "DecideLoginTicket to the other decision", got, err, storage.ErrConflict)
		got, err = s.DecideLoginTicket(ctx, "t1", f.bob, storage.TicketApproved, f.at(3*time.Second), f.completeBy())
		checkRefused(t, ctx, s, "the same decision by another user", got, err, storage.ErrConflict)
		checkStored(t, ctx, s, "after the repeats", want)

		f.mustCreate(t, ctx, s, "t2")
		f.mustScan(t, ctx, s, "t2", f.bob)
		if got := f.mustDecide(t, ctx, s, "t2", f.bob, storage.TicketDenied); got.State != storage.TicketDenied {
			t.Errorf("denied ticket State = %s", got.State)
		}

		f.mustCreate(t, ctx, s, "t3")
		f.mustScan(t, ctx, s, "t3", f.alice)
		_, err = s.DecideLoginTicket(ctx, "t3", f.alice, storage.TicketApproved, f.t0.Add(f.ticketMaxAge), f.completeBy())
		checkRefused(t, ctx, s, "DecideLoginTicket at ExpiresAt", nil, err, storage.ErrExpired)
		_, err = s.DecideLoginTicket(ctx, "nope", f.alice, storage.TicketApproved, now, f.completeBy())
		checkRefused(t, ctx, s, "DecideLoginTicket of an unknown ticket", nil, err, storage.ErrNotFound)
	})

	su.run(t, "Consume", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		want := f.mustCreate(t, ctx, s, "t1")
		now := f.at(3 * time.Second)
		got, err := s.ConsumeLoginTicket(ctx, "t1", want.BrowserHash, now)
		checkRefused(t, ctx, s, "ConsumeLoginTicket of a waiting ticket", got, err, storage.ErrConflict)
		f.mustScan(t, ctx, s, "t1", f.alice)
		got, err = s.ConsumeLoginTicket(ctx, "t1", want.BrowserHash, now)
		checkRefused(t, ctx, s, "ConsumeLoginTicket of a scanned ticket", got, err, storage.ErrConflict)
		approved := f.mustDecide(t, ctx, s, "t1", f.alice, storage.TicketApproved)

		got, err = s.ConsumeLoginTicket(ctx, "t1", storage.HashKey("another browser"), now)
		if !errors.Is(err, storage.ErrNotFound) || got != nil {
			t.Fatalf("ConsumeLoginTicket by another browser: %+v, %v; want nothing, ErrNotFound", got, err)
		}
		checkStored(t, ctx, s, "after another browser's attempt", approved)

		got, err = s.ConsumeLoginTicket(ctx, "t1", want.BrowserHash, now)
		if err != nil {
			t.Fatalf("ConsumeLoginTicket: %v", err)
		}
		checkTicket(t, "ConsumeLoginTicket returns the decision", got, approved)
		consumed := *approved
		consumed.State = storage.TicketConsumed
		checkStored(t, ctx, s, "consumed", &consumed)
		got, err = s.ConsumeLoginTicket(ctx, "t1", want.BrowserHash, now)
		checkRefused(t, ctx, s, "ConsumeLoginTicket again", got, err, storage.ErrConflict)
		// Consumed is over, not expired, even past its time.
		got, err = s.ConsumeLoginTicket(ctx, "t1", want.BrowserHash, f.completeBy().Add(time.Hour))
		checkRefused(t, ctx, s, "ConsumeLoginTicket again, later", got, err, storage.ErrConflict)

		// A denial is completed too: the browser learns it was denied.
		denied := f.mustCreate(t, ctx, s, "t2")
		f.mustScan(t, ctx, s, "t2", f.bob)
		f.mustDecide(t, ctx, s, "t2", f.bob, storage.TicketDenied)
		if got, err := s.ConsumeLoginTicket(ctx, "t2", denied.BrowserHash, now); err != nil || got.State != storage.TicketDenied {
			t.Errorf("ConsumeLoginTicket of a denied ticket: %+v, %v; want State denied", got, err)
		}

		late := f.mustCreate(t, ctx, s, "t3")
		f.mustScan(t, ctx, s, "t3", f.alice)
		f.mustDecide(t, ctx, s, "t3", f.alice, storage.TicketApproved)
		_, err = s.ConsumeLoginTicket(ctx, "t3", late.BrowserHash, f.completeBy())
		checkRefused(t, ctx, s, "ConsumeLoginTicket at the decision's deadline", nil, err, storage.ErrExpired)
		if stored, err := s.GetLoginTicket(ctx, "t3"); err != nil || stored.State != storage.TicketApproved {
			t.Errorf("expired ticket after the refused consume: %+v, %v; want approved", stored, err)
		}
		_, err = s.ConsumeLoginTicket(ctx, "nope", late.BrowserHash, now)
		checkRefused(t, ctx, s, "ConsumeLoginTicket of an unknown ticket", nil, err, storage.ErrNotFound)
	})

	su.run(t, "ScanRace", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		f.mustCreate(t, ctx, s, "t1")
		const n = 8
		users := make([]string, n)
		for i := range users {
			u, _ := mustLink(t, ctx, s, login{appB, fmt.Sprintf("o-%d", i), "", fmt.Sprintf("racer-%d", i)})
			users[i] = u.ID
		}
		winners := make([]string, n)
		errs := parallel(n, func(i int) error {
			lt, err := s.ScanLoginTicket(ctx, "t1", users[i], f.at(time.Second))
			if err == nil {
				winners[i] = lt.UserID
			}
			return err
		})
		checkOneWins(t, "ScanLoginTicket", errs, storage.ErrConflict)
		stored, err := s.GetLoginTicket(ctx, "t1")
		if err != nil {
			t.Fatal(err)
		}
		if i := slices.Index(errs, nil); i >= 0 && (winners[i] != users[i] || stored.UserID != users[i]) {
			t.Errorf("winner %s; returned %q, stored %q", users[i], winners[i], stored.UserID)
		}
	})

	su.run(t, "ConsumeRace", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		lt := f.mustCreate(t, ctx, s, "t1")
		f.mustScan(t, ctx, s, "t1", f.alice)
		f.mustDecide(t, ctx, s, "t1", f.alice, storage.TicketApproved)
		errs := parallel(8, func(int) error {
			got, err := s.ConsumeLoginTicket(ctx, "t1", lt.BrowserHash, f.at(3*time.Second))
			if err == nil && got.State != storage.TicketApproved {
				return fmt.Errorf("consumed ticket returned with State %s, want approved", got.State)
			}
			return err
		})
		checkOneWins(t, "ConsumeLoginTicket", errs, storage.ErrConflict)
	})

	su.run(t, "RolledBack", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		want := f.mustCreate(t, ctx, s, "t1")
		tx, err := s.BeginTX(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.mustScan(t, tx, s, "t1", f.alice)
		f.mustCreate(t, tx, s, "t2")
		if err := s.Rollback(tx); err != nil {
			t.Fatal(err)
		}
		checkStored(t, ctx, s, "after the rollback", want)
		if _, err := s.GetLoginTicket(ctx, "t2"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ticket created in the rolled-back transaction: %v, want ErrNotFound", err)
		}
	})

	su.run(t, "DeleteClient", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		f.mustCreate(t, ctx, s, "t1")
		f.mustScan(t, ctx, s, "t1", f.alice)
		if err := s.DeleteClient(ctx, f.client.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetLoginTicket(ctx, "t1"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ticket of a deleted client: %v, want ErrNotFound", err)
		}
	})

	testBrowserSessions(t, su)
	testLoginPurge(t, su)
}

func testBrowserSessions(t *testing.T, su suite) {
	su.run(t, "BrowserSessions", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		want := storage.BrowserSession{
			ID: storage.HashKey("session-cookie"), UserID: f.alice, AuthTime: f.t0.Add(-time.Minute),
			AMR: []string{"wechat", "qr"}, CreatedAt: f.t0, ExpiresAt: f.t0.Add(24 * time.Hour),
		}
		in := want
		in.AMR = slices.Clone(want.AMR)
		if err := s.CreateBrowserSession(ctx, &in); err != nil {
			t.Fatalf("CreateBrowserSession: %v", err)
		}
		in.AMR[0] = "password"
		check := func(what string, now time.Time) {
			t.Helper()
			got, err := s.GetBrowserSession(ctx, want.ID, now)
			if err != nil {
				t.Fatalf("%s: GetBrowserSession: %v", what, err)
			}
			if got.ID != want.ID || got.UserID != want.UserID || !got.AuthTime.Equal(want.AuthTime) ||
				!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || !slices.Equal(got.AMR, want.AMR) {
				t.Errorf("%s: GetBrowserSession = %+v, want %+v", what, got, want)
			}
			got.AMR[0] = "password"
		}
		check("created", f.at(time.Second))
		check("again", f.at(time.Second)) // the caller's edit did not reach the store
		check("just before expiry", want.ExpiresAt.Add(-time.Microsecond))

		dup := want
		dup.UserID = f.bob
		if err := s.CreateBrowserSession(ctx, &dup); !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("CreateBrowserSession of a taken ID: %v, want ErrAlreadyExists", err)
		}
		check("after the refused duplicate", f.at(time.Second))
		if _, err := s.GetBrowserSession(ctx, want.ID, want.ExpiresAt); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetBrowserSession at ExpiresAt: %v, want ErrNotFound", err)
		}
		if _, err := s.GetBrowserSession(ctx, "nope", f.t0); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetBrowserSession of an unknown session: %v, want ErrNotFound", err)
		}

		noTime := storage.BrowserSession{ID: "s2", UserID: f.bob, AuthTime: f.t0, ExpiresAt: f.t0.Add(time.Hour)}
		before := time.Now()
		if err := s.CreateBrowserSession(ctx, &noTime); err != nil {
			t.Fatalf("CreateBrowserSession without CreatedAt: %v", err)
		}
		checkRecent(t, "CreatedAt", noTime.CreatedAt, before, time.Now())

		if err := s.DeleteBrowserSession(ctx, want.ID); err != nil {
			t.Fatalf("DeleteBrowserSession: %v", err)
		}
		if _, err := s.GetBrowserSession(ctx, want.ID, f.t0); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetBrowserSession after delete: %v, want ErrNotFound", err)
		}
		if err := s.DeleteBrowserSession(ctx, want.ID); err != nil {
			t.Errorf("DeleteBrowserSession of an absent session: %v, want nil", err)
		}
		if _, err := s.GetBrowserSession(ctx, "s2", f.t0); err != nil {
			t.Errorf("the other session after a delete: %v", err)
		}
	})
}

// testLoginPurge: PurgeExpired deletes tickets and sessions past their
// expiry, in batches, and keeps live ones.
func testLoginPurge(t *testing.T, su suite) {
	su.run(t, "Purge", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		now := f.t0.Add(10 * time.Minute)
		for i := range 2 {
			f.mustCreate(t, ctx, s, fmt.Sprintf("old-%d", i)) // expires at t0+5m
			old := storage.BrowserSession{ID: fmt.Sprintf("s-old-%d", i), UserID: f.alice, AuthTime: f.t0,
				CreatedAt: f.t0, ExpiresAt: now.Add(-time.Duration(i+1) * time.Second)}
			if err := s.CreateBrowserSession(ctx, &old); err != nil {
				t.Fatal(err)
			}
		}
		live := f.ticket("live")
		live.ExpiresAt = now.Add(time.Minute)
		if err := s.CreateLoginTicket(ctx, live); err != nil {
			t.Fatal(err)
		}
		liveSession := storage.BrowserSession{ID: "s-live", UserID: f.bob, AuthTime: f.t0, CreatedAt: f.t0,
			ExpiresAt: now.Add(time.Hour)}
		if err := s.CreateBrowserSession(ctx, &liveSession); err != nil {
			t.Fatal(err)
		}

		purge(t, ctx, s, now, now, 1, map[string]int{"login_tickets": 1, "browser_sessions": 1})
		purge(t, ctx, s, now, now, 10, map[string]int{"login_tickets": 1, "browser_sessions": 1})
		purge(t, ctx, s, now, now, 10, nil)
		for _, id := range []string{"old-0", "old-1"} {
			if _, err := s.GetLoginTicket(ctx, id); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("GetLoginTicket(%s) after purge: %v, want ErrNotFound", id, err)
			}
		}
		if _, err := s.GetLoginTicket(ctx, "live"); err != nil {
			t.Errorf("live ticket after purge: %v", err)
		}
		// Asked as of t0, when they were live: gone means deleted.
		for _, id := range []string{"s-old-0", "s-old-1"} {
			if _, err := s.GetBrowserSession(ctx, id, f.t0); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("GetBrowserSession(%s) after purge: %v, want ErrNotFound", id, err)
			}
		}
		if _, err := s.GetBrowserSession(ctx, "s-live", now); err != nil {
			t.Errorf("live session after purge: %v", err)
		}
	})
}
