package janitor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/janitor"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
)

func TestRunOncePurgesAndHoldsTheLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := memory.New()
	if err := store.CreateClient(ctx, &storage.Client{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	client, _ := store.GetClient(ctx, "c")
	for i, exp := range []time.Duration{-time.Hour, -time.Hour, -time.Hour, time.Hour} {
		sess := openid.NewDefaultSession()
		sess.SetExpiresAt(fosite.AccessToken, time.Now().Add(exp))
		r := fosite.NewRequest()
		r.ID, r.Client, r.Session = string(rune('a'+i)), client, sess
		if err := store.CreateAccessTokenSession(ctx, r.ID, r); err != nil {
			t.Fatal(err)
		}
	}
	// Batches of 2 make RunOnce loop, renewing its lease.
	j := janitor.New(store, janitor.Options{Batch: 2})
	stats, err := j.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Total() != 3 {
		t.Fatalf("purged %v, want the 3 expired tokens", stats)
	}
	if _, err := store.GetAccessTokenSession(ctx, "d", openid.NewDefaultSession()); err != nil {
		t.Fatalf("the live token was purged: %v", err)
	}

	// While another holder has the lease, RunOnce stands aside.
	if ok, err := store.TryLease(ctx, "janitor", "someone-else", time.Now(), time.Now().Add(time.Minute)); !ok || err != nil {
		t.Fatalf("lease: %v %v", ok, err)
	}
	if _, err := j.RunOnce(ctx); !errors.Is(err, janitor.ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
	// RunOnce released its own lease when it finished: a second janitor runs.
	if err := store.ReleaseLease(ctx, "janitor", "someone-else"); err != nil {
		t.Fatal(err)
	}
	if _, err := janitor.New(store, janitor.Options{}).RunOnce(ctx); err != nil {
		t.Fatalf("second janitor: %v", err)
	}
}

// Audit events go once older than AuditRetention, in batches; the default
// keeps them 90 days.
func TestRunOncePurgesOldAuditEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := memory.New()
	now := time.Now()
	for _, age := range []time.Duration{100 * 24 * time.Hour, 95 * 24 * time.Hour, 91 * 24 * time.Hour, 89 * 24 * time.Hour, time.Hour} {
		if err := store.AppendAudit(ctx, &storage.AuditEvent{Time: now.Add(-age), Type: "client.created", Outcome: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	stats, err := janitor.New(store, janitor.Options{Batch: 2, Now: func() time.Time { return now }}).RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats[janitor.AuditTable] != 3 {
		t.Errorf("purged %v, want the 3 events older than 90 days", stats)
	}
	stats, err = janitor.New(store, janitor.Options{AuditRetention: 2 * time.Hour, Now: func() time.Time { return now }}).RunOnce(ctx)
	if err != nil || stats[janitor.AuditTable] != 1 {
		t.Errorf("with a 2h retention: %v %v, want the 89-day-old event purged", stats, err)
	}
	left, err := store.ListAudit(ctx, storage.AuditFilter{}, nil, 10)
	if err != nil || len(left) != 1 {
		t.Errorf("left %v %v, want the hour-old event", left, err)
	}
}
