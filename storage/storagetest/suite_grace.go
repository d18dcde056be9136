package storagetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// RunGrace runs the cases of the refresh grace period (storage.FositeStore)
// and of purging by deactivation time. They need stores built with options
// Run's constructor cannot pass: newStore must return an empty store, seen
// by no other subtest, whose refresh grace period is grace and whose clock
// for deactivating refresh tokens and judging the grace is now. now is safe
// for concurrent use; the cases move it instead of sleeping.
func RunGrace(t *testing.T, newStore func(t *testing.T, grace time.Duration, now func() time.Time) storage.Store) {
	t.Helper()
	gs := graceSuite{newStore: newStore}
	for _, g := range []struct {
		name string
		run  func(t *testing.T, gs graceSuite)
	}{
		{"Semantics", testGraceSemantics},
		{"Concurrency", testGraceConcurrency},
		{"Purge", testGracePurge},
	} {
		t.Run(g.name, func(t *testing.T) { g.run(t, gs) })
	}
}

// graceWindow is the grace period of the cases that want one: long enough
// that real time passing during a test never matters, as only the fake
// clock moves the store's notion of now.
const graceWindow = 10 * time.Second

type graceSuite struct {
	newStore func(t *testing.T, grace time.Duration, now func() time.Time) storage.Store
}

// fakeClock is a settable clock, starting at a whole second (so instants the
// cases compute are exact at microsecond precision).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (gs graceSuite) run(t *testing.T, name string, grace time.Duration, fn func(t *testing.T, ctx context.Context, s storage.Store, clock *fakeClock)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		clock := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
		s := gs.newStore(t, grace, clock.Now)
		fn(t, t.Context(), s, clock)
	})
}

func checkRotate(t *testing.T, ctx context.Context, s storage.Store, requestID, sig string, want error) {
	t.Helper()
	if err := s.RotateRefreshToken(ctx, requestID, sig); !errors.Is(err, want) {
		t.Errorf("RotateRefreshToken(%s, %s): %v, want %v", requestID, sig, err, want)
	}
}

func testGraceSemantics(t *testing.T, gs graceSuite) {
	// With no grace period a rotated token is inactive at once, even at the
	// very instant it was rotated.
	gs.run(t, "NoGrace", 0, func(t *testing.T, ctx context.Context, s storage.Store, _ *fakeClock) {
		c := mustCreateClient(t, ctx, s, "client")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1")
		checkRotate(t, ctx, s, "req-1", "rt-1", nil)
		checkTokens(t, ctx, s, map[string]error{"rt-1": fosite.ErrInactiveToken, "at-1": fosite.ErrNotFound})
		checkRotate(t, ctx, s, "req-1", "rt-1", fosite.ErrNotFound)
	})

	// A client that lost the response to its refresh retries with the same
	// token once: it works, without touching the tokens the first refresh
	// issued; a third use is reuse.
	gs.run(t, "RetryOnce", graceWindow, func(t *testing.T, ctx context.Context, s storage.Store, clock *fakeClock) {
		c := mustCreateClient(t, ctx, s, "client")
		r := newRequest(c, "req-1")
		mustCreateTokens(t, ctx, s, r, "1")
		checkRotate(t, ctx, s, "req-1", "rt-1", nil)
		checkTokens(t, ctx, s, map[string]error{"rt-1": nil, "at-1": fosite.ErrNotFound})
		// What the first refresh issued. at-1 is stored again only so that a
		// store deleting rt-1's access token a second time would show.
		mustCreateTokens(t, ctx, s, r, "2")
		if err := s.CreateAccessTokenSession(ctx, "at-1", r); err != nil {
			t.Fatal(err)
		}
		clock.Add(graceWindow / 2)
		// A signature presented under another request ID is not that token,
		// and does not spend its grace.
		checkRotate(t, ctx, s, "req-other", "rt-1", fosite.ErrNotFound)
		checkRotate(t, ctx, s, "req-1", "rt-1", nil)
		checkTokens(t, ctx, s, map[string]error{
			"rt-1": fosite.ErrInactiveToken, "at-1": nil, "rt-2": nil, "at-2": nil,
		})
		checkRotate(t, ctx, s, "req-1", "rt-1", fosite.ErrNotFound)
		// The tokens the first refresh issued rotate as usual, with a grace
		// of their own.
		checkRotate(t, ctx, s, "req-1", "rt-2", nil)
		checkTokens(t, ctx, s, map[string]error{"rt-2": nil, "at-2": fosite.ErrNotFound})
	})

	// The grace runs from the rotation: less than the period later the token
	// still reads active, at the period it is inactive.
	gs.run(t, "Expires", graceWindow, func(t *testing.T, ctx context.Context, s storage.Store, clock *fakeClock) {
		c := mustCreateClient(t, ctx, s, "client")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1", "2")
		checkRotate(t, ctx, s, "req-1", "rt-1", nil)
		checkRotate(t, ctx, s, "req-1", "rt-2", nil)
		clock.Add(graceWindow - time.Microsecond)
		checkTokens(t, ctx, s, map[string]error{"rt-1": nil, "rt-2": nil})
		checkRotate(t, ctx, s, "req-1", "rt-2", nil)
		clock.Add(time.Microsecond)
		checkTokens(t, ctx, s, map[string]error{"rt-1": fosite.ErrInactiveToken, "rt-2": fosite.ErrInactiveToken})
		checkRotate(t, ctx, s, "req-1", "rt-1", fosite.ErrNotFound)
	})

	// fosite revokes a chain when it sees reuse; no token of it may then be
	// retried, rotated recently or not.
	gs.run(t, "RevokedHasNoGrace", graceWindow, func(t *testing.T, ctx context.Context, s storage.Store, clock *fakeClock) {
		c := mustCreateClient(t, ctx, s, "client")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1", "2")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-2"), "3")
		checkRotate(t, ctx, s, "req-1", "rt-1", nil)
		checkRotate(t, ctx, s, "req-2", "rt-3", nil)
		clock.Add(time.Second)
		if err := s.RevokeRefreshToken(ctx, "req-1"); err != nil {
			t.Fatalf("RevokeRefreshToken: %v", err)
		}
		checkTokens(t, ctx, s, map[string]error{
			"rt-1": fosite.ErrInactiveToken, "rt-2": fosite.ErrInactiveToken,
			"rt-3": nil, // another request's rotated token keeps its grace
		})
		checkRotate(t, ctx, s, "req-1", "rt-1", fosite.ErrNotFound)
		checkRotate(t, ctx, s, "req-1", "rt-2", fosite.ErrNotFound)
		checkRotate(t, ctx, s, "req-2", "rt-3", nil)
	})

	// fosite rolls back a refresh whose later steps fail; the grace use must
	// be undone with it, or the client's retry would be taken for reuse.
	gs.run(t, "RollbackRestoresGrace", graceWindow, func(t *testing.T, ctx context.Context, s storage.Store, _ *fakeClock) {
		c := mustCreateClient(t, ctx, s, "client")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1")
		checkRotate(t, ctx, s, "req-1", "rt-1", nil)
		tx, err := s.BeginTX(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRotate(t, tx, s, "req-1", "rt-1", nil)
		if err := s.Rollback(tx); err != nil {
			t.Fatal(err)
		}
		checkTokens(t, ctx, s, map[string]error{"rt-1": nil})
		checkRotate(t, ctx, s, "req-1", "rt-1", nil)
		checkRotate(t, ctx, s, "req-1", "rt-1", fosite.ErrNotFound)
	})
}

func testGraceConcurrency(t *testing.T, gs graceSuite) {
	// Concurrent refreshes with one fresh token: without a grace period one
	// wins; with one, the rotation and the single grace use win, never more.
	for _, tc := range []struct {
		name  string
		grace time.Duration
		wins  int
	}{{"NoGrace", 0, 1}, {"Grace", graceWindow, 2}} {
		for _, inTx := range []bool{false, true} {
			name := tc.name
			if inTx {
				name += "InTx"
			}
			gs.run(t, name, tc.grace, func(t *testing.T, ctx context.Context, s storage.Store, _ *fakeClock) {
				c := mustCreateClient(t, ctx, s, "client")
				mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1")
				wins := rotateConcurrently(t, ctx, s, 32, inTx)
				if wins != tc.wins {
					t.Errorf("%d of 32 concurrent rotations succeeded, want %d", wins, tc.wins)
				}
				checkTokens(t, ctx, s, map[string]error{"rt-1": fosite.ErrInactiveToken, "at-1": fosite.ErrNotFound})
			})
		}
	}
}

func testGracePurge(t *testing.T, gs graceSuite) {
	// The inactive cutoff compares with the store's deactivation time:
	// deactivated at the cutoff is not before it.
	gs.run(t, "ByDeactivationTime", graceWindow, func(t *testing.T, ctx context.Context, s storage.Store, clock *fakeClock) {
		c := mustCreateClient(t, ctx, s, "client")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1", "2", "3")
		rotatedAt := clock.Now()
		checkRotate(t, ctx, s, "req-1", "rt-1", nil)
		clock.Add(time.Minute)
		checkRotate(t, ctx, s, "req-1", "rt-2", nil)
		// The grace use does not move the deactivation time.
		checkRotate(t, ctx, s, "req-1", "rt-2", nil)
		purge(t, ctx, s, rotatedAt, rotatedAt, 10, nil)
		purge(t, ctx, s, rotatedAt, rotatedAt.Add(time.Microsecond), 10, map[string]int{"oauth2_refresh_tokens": 1})
		purge(t, ctx, s, rotatedAt, clock.Now(), 10, nil)
		purge(t, ctx, s, rotatedAt, clock.Now().Add(time.Microsecond), 10, map[string]int{"oauth2_refresh_tokens": 1})
		checkTokens(t, ctx, s, map[string]error{
			"rt-1": fosite.ErrNotFound, "rt-2": fosite.ErrNotFound, "rt-3": nil, "at-3": nil,
		})
	})
}
