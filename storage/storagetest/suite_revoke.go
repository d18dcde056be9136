package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// revoked returns copies of r's keys as revoking kid at `at` leaves them,
// given newNext as the store should hold it (nil when it is not stored).
func (r keyring) revoked(kid string, at time.Time, newNext *storage.SigningKey) []*storage.SigningKey {
	var out []*storage.SigningKey
	if newNext != nil {
		out = append(out, newNext)
	}
	for _, k := range r.keys() {
		if k.KID == kid {
			continue
		}
		c := *k
		if c.State == storage.KeyNext && r.active != nil && r.active.KID == kid {
			c.State, c.ActivatedAt = storage.KeyActive, usec(at)
		}
		out = append(out, &c)
	}
	return out
}

// testKeyRevocation covers RevokeSigningKey: a leaked key goes at once,
// whatever its state, and an active key always remains.
func testKeyRevocation(t *testing.T, su suite) {
	for _, tc := range []struct {
		name string
		ring func() keyring
		kid  func(r keyring) string
		// state newNext is stored in; "" when it is not stored.
		newState storage.KeyState
	}{
		{"Active", fullKeyring, func(r keyring) string { return r.active.KID }, storage.KeyNext},
		{"Next", fullKeyring, func(r keyring) string { return r.next.KID }, storage.KeyNext},
		{"Retired", fullKeyring, func(r keyring) string { return r.retired.KID }, ""},
		// The only key, as after a first start that crashed before creating
		// the next key: newNext must sign at once.
		{"OnlyKey", func() keyring { return keyring{active: fullKeyring().active} },
			func(r keyring) string { return r.active.KID }, storage.KeyActive},
		{"ActiveWithoutNext", func() keyring { r := fullKeyring(); r.next = nil; return r },
			func(r keyring) string { return r.active.KID }, storage.KeyActive},
	} {
		su.run(t, "Revoke/"+tc.name, func(t *testing.T, ctx context.Context, s storage.Store) {
			r := tc.ring().create(t, ctx, s)
			kid := tc.kid(r)
			at := usec(time.Now())
			newNext := newKey("k-new", storage.KeyNext, at)
			// The store, not the caller's fields, decides the new key's state.
			newNext.State, newNext.RetiredAt = storage.KeyRetired, at
			if err := s.RevokeSigningKey(ctx, kid, newNext, at); err != nil {
				t.Fatalf("RevokeSigningKey(%s): %v", kid, err)
			}
			var want *storage.SigningKey
			if tc.newState != "" {
				want = newKey("k-new", storage.KeyNext, at)
				want.State = tc.newState
				if tc.newState == storage.KeyActive {
					want.ActivatedAt = at
				}
				if newNext.State != want.State || !newNext.ActivatedAt.Equal(want.ActivatedAt) {
					t.Errorf("newNext = %s activated %v after revocation, want %s activated %v",
						newNext.State, newNext.ActivatedAt, want.State, want.ActivatedAt)
				}
			}
			checkKeys(t, ctx, s, r.revoked(kid, at, want)...)
		})
	}

	su.run(t, "Revoke/UnknownKID", func(t *testing.T, ctx context.Context, s storage.Store) {
		r := fullKeyring().create(t, ctx, s)
		err := s.RevokeSigningKey(ctx, "k-unknown", newKey("k-new", storage.KeyNext, time.Now()), time.Now())
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("RevokeSigningKey of an unknown kid: %v, want ErrNotFound", err)
		}
		checkKeys(t, ctx, s, r.keys()...)
	})

	su.run(t, "Revoke/NewNextKIDTaken", func(t *testing.T, ctx context.Context, s storage.Store) {
		r := fullKeyring().create(t, ctx, s)
		for _, k := range r.keys() {
			err := s.RevokeSigningKey(ctx, r.active.KID, newKey(k.KID, storage.KeyNext, time.Now()), time.Now())
			if !errors.Is(err, storage.ErrAlreadyExists) {
				t.Errorf("RevokeSigningKey with newNext %s: %v, want ErrAlreadyExists", k.KID, err)
			}
		}
		checkKeys(t, ctx, s, r.keys()...)
	})

	// Rolled back as a whole, and a refusal leaves the caller's transaction
	// usable (in PostgreSQL a failed statement outside a savepoint aborts it).
	su.run(t, "Revoke/InTx", func(t *testing.T, ctx context.Context, s storage.Store) {
		r := fullKeyring().create(t, ctx, s)
		txCtx := mustBegin(t, ctx, s)
		if err := s.RevokeSigningKey(txCtx, "k-unknown", newKey("k-x", storage.KeyNext, time.Now()), time.Now()); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("RevokeSigningKey of an unknown kid in a transaction: %v, want ErrNotFound", err)
		}
		if err := s.RevokeSigningKey(txCtx, r.active.KID, newKey("k-new", storage.KeyNext, time.Now()), time.Now()); err != nil {
			t.Fatalf("RevokeSigningKey in a transaction: %v", err)
		}
		if err := s.Rollback(txCtx); err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		checkKeys(t, ctx, s, r.keys()...)
	})

	// A scheduled rotation may fire while an operator revokes the active
	// key. Whichever runs first, the revoked key ends up gone (not merely
	// retired, which would keep it published), with one active and one next
	// key left. notBefore in the future makes every next key ready, yet a
	// rotation that waited for the revocation may still find the next key
	// it saw gone (ErrNotReady, as for concurrent rotations): the
	// revocation itself must succeed.
	su.run(t, "Revoke/ConcurrentRotate", func(t *testing.T, ctx context.Context, s storage.Store) {
		fullKeyring().create(t, ctx, s)
		for round := range 5 {
			kid := keyIn(t, ctx, s, storage.KeyActive)
			future := time.Now().Add(time.Hour)
			errs := parallel(2, func(i int) error {
				k := newKey(fmt.Sprintf("k-%d-%d", round, i), storage.KeyNext, time.Now())
				if i == 0 {
					return s.RevokeSigningKey(ctx, kid, k, time.Now())
				}
				return s.RotateSigningKeys(ctx, k, future, time.Now())
			})
			if errs[0] != nil {
				t.Fatalf("round %d: RevokeSigningKey: %v", round, errs[0])
			}
			if errs[1] != nil && !errors.Is(errs[1], storage.ErrNotReady) {
				t.Fatalf("round %d: RotateSigningKeys: %v, want nil or ErrNotReady", round, errs[1])
			}
			checkRevokedGone(t, ctx, s, kid)
		}
	})

	// Two operators revoking the same leaked key: one revocation happens,
	// the other finds it gone.
	su.run(t, "Revoke/ConcurrentSameKID", func(t *testing.T, ctx context.Context, s storage.Store) {
		r := fullKeyring().create(t, ctx, s)
		errs := parallel(5, func(i int) error {
			return s.RevokeSigningKey(ctx, r.active.KID, newKey(fmt.Sprintf("k-new-%d", i), storage.KeyNext, time.Now()), time.Now())
		})
		checkOneWins(t, "RevokeSigningKey", errs, storage.ErrNotFound)
		checkRevokedGone(t, ctx, s, r.active.KID)
	})

	// Both keys a leak exposed, revoked at once.
	su.run(t, "Revoke/ConcurrentActiveAndNext", func(t *testing.T, ctx context.Context, s storage.Store) {
		r := fullKeyring().create(t, ctx, s)
		kids := []string{r.active.KID, r.next.KID}
		errs := parallel(len(kids), func(i int) error {
			return s.RevokeSigningKey(ctx, kids[i], newKey(fmt.Sprintf("k-new-%d", i), storage.KeyNext, time.Now()), time.Now())
		})
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("RevokeSigningKey: %v", err)
		}
		checkRevokedGone(t, ctx, s, kids...)
	})
}

// keyIn returns the kid of the store's key in state.
func keyIn(t *testing.T, ctx context.Context, s storage.Store, state storage.KeyState) string {
	t.Helper()
	keys, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	for _, k := range keys {
		if k.State == state {
			return k.KID
		}
	}
	t.Fatalf("no %s key", state)
	return ""
}

// checkRevokedGone fails unless none of kids is stored and exactly one key
// is active and one next.
func checkRevokedGone(t *testing.T, ctx context.Context, s storage.Store, kids ...string) {
	t.Helper()
	keys, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	states := map[storage.KeyState]int{}
	for _, k := range keys {
		states[k.State]++
		for _, kid := range kids {
			if k.KID == kid {
				t.Errorf("revoked key %s is still stored (%s)", kid, k.State)
			}
		}
	}
	if states[storage.KeyActive] != 1 || states[storage.KeyNext] != 1 {
		t.Errorf("after revocation: %d active and %d next keys, want 1 and 1", states[storage.KeyActive], states[storage.KeyNext])
	}
}
