package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// keyring is a store in mid-life: a retired key, the active key, and a next
// key published for a while. Any of them may be nil (not created).
type keyring struct {
	retired, active, next *storage.SigningKey
}

// keyBase is well in the past so that the keys the store stamps with the
// current time are newer than every key a case creates.
var keyBase = usec(time.Now().Add(-72 * time.Hour))

func fullKeyring() keyring {
	return keyring{
		retired: newKey("k-retired", storage.KeyRetired, keyBase),
		active:  newKey("k-active", storage.KeyActive, keyBase.Add(24*time.Hour)),
		next:    newKey("k-next", storage.KeyNext, keyBase.Add(48*time.Hour)),
	}
}

func (r keyring) keys() []*storage.SigningKey {
	var out []*storage.SigningKey
	for _, k := range []*storage.SigningKey{r.retired, r.active, r.next} {
		if k != nil {
			out = append(out, k)
		}
	}
	return out
}

func (r keyring) create(t *testing.T, ctx context.Context, s storage.Store) keyring {
	t.Helper()
	for _, k := range r.keys() {
		if err := s.CreateSigningKey(ctx, k); err != nil {
			t.Fatalf("CreateSigningKey(%s): %v", k.KID, err)
		}
	}
	return r
}

// rotated returns copies of r's keys as a rotation at `at` leaves them, and
// the new next key as stored.
func (r keyring) rotated(at time.Time, newNext *storage.SigningKey) []*storage.SigningKey {
	out := []*storage.SigningKey{newNext}
	if r.retired != nil {
		out = append(out, r.retired)
	}
	if r.active != nil {
		k := *r.active
		k.State, k.RetiredAt = storage.KeyRetired, usec(at)
		out = append(out, &k)
	}
	k := *r.next
	k.State, k.ActivatedAt = storage.KeyActive, usec(at)
	return append(out, &k)
}

// checkKeys fails unless the store holds exactly want, compared field by
// field.
func checkKeys(t *testing.T, ctx context.Context, s storage.Store, want ...*storage.SigningKey) {
	t.Helper()
	got, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	byKID := map[string]*storage.SigningKey{}
	for i := range got {
		byKID[got[i].KID] = &got[i]
	}
	for _, w := range want {
		g, ok := byKID[w.KID]
		if !ok {
			t.Errorf("key %s missing", w.KID)
			continue
		}
		checkKey(t, g, w)
		delete(byKID, w.KID)
	}
	for kid, k := range byKID {
		t.Errorf("unexpected key %s (%s)", kid, k.State)
	}
}

// checkStates fails unless the store holds exactly want keys in each state.
func checkStates(t *testing.T, ctx context.Context, s storage.Store, want map[storage.KeyState]int) {
	t.Helper()
	keys, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	got := map[storage.KeyState]int{}
	for _, k := range keys {
		got[k.State]++
	}
	for _, st := range []storage.KeyState{storage.KeyNext, storage.KeyActive, storage.KeyRetired} {
		if got[st] != want[st] {
			t.Errorf("%d %s keys, want %d", got[st], st, want[st])
		}
	}
}

func testKeyRotation(t *testing.T, su suite) {
	su.run(t, "Rotate", func(t *testing.T, ctx context.Context, s storage.Store) {
		r := fullKeyring().create(t, ctx, s)
		at := usec(time.Now())
		newNext := newKey("k-new", storage.KeyNext, at)
		// The store, not the caller's State, makes it the next key.
		newNext.State = ""
		// Published exactly as long as required is long enough.
		if err := s.RotateSigningKeys(ctx, newNext, r.next.CreatedAt, at); err != nil {
			t.Fatalf("RotateSigningKeys: %v", err)
		}
		if newNext.State != storage.KeyNext {
			t.Errorf("newNext.State = %q after rotation, want %q", newNext.State, storage.KeyNext)
		}
		checkKeys(t, ctx, s, r.rotated(at, newKey("k-new", storage.KeyNext, at))...)
	})

	// The first rotation after a start that created only a next key, or
	// after an operator retired the active key by hand.
	su.run(t, "RotateWithoutActive", func(t *testing.T, ctx context.Context, s storage.Store) {
		r := fullKeyring()
		r.active = nil
		r.create(t, ctx, s)
		at := usec(time.Now())
		newNext := newKey("k-new", storage.KeyNext, time.Time{})
		newNext.CreatedAt = time.Time{}
		before := time.Now()
		if err := s.RotateSigningKeys(ctx, newNext, at, at); err != nil {
			t.Fatalf("RotateSigningKeys: %v", err)
		}
		checkRecent(t, "newNext CreatedAt", newNext.CreatedAt, before, time.Now())
		want := *newNext
		want.CreatedAt = usec(want.CreatedAt)
		checkKeys(t, ctx, s, r.rotated(at, &want)...)
	})

	// Each rotation's next key must wait out its own publication.
	su.run(t, "TwoRotations", func(t *testing.T, ctx context.Context, s storage.Store) {
		fullKeyring().create(t, ctx, s)
		t1, t2 := keyBase.Add(50*time.Hour), keyBase.Add(60*time.Hour)
		if err := s.RotateSigningKeys(ctx, newKey("k-2", storage.KeyNext, t1), t1, t1); err != nil {
			t.Fatalf("first RotateSigningKeys: %v", err)
		}
		err := s.RotateSigningKeys(ctx, newKey("k-3", storage.KeyNext, t2), t1.Add(-time.Microsecond), t2)
		if !errors.Is(err, storage.ErrNotReady) {
			t.Fatalf("RotateSigningKeys before k-2 was published long enough: %v, want ErrNotReady", err)
		}
		if err := s.RotateSigningKeys(ctx, newKey("k-3", storage.KeyNext, t2), t2, t2); err != nil {
			t.Fatalf("second RotateSigningKeys: %v", err)
		}
		checkStates(t, ctx, s, map[storage.KeyState]int{storage.KeyNext: 1, storage.KeyActive: 1, storage.KeyRetired: 3})
	})

	for _, tc := range []struct {
		name      string
		ring      func() keyring
		notBefore func(r keyring) time.Time
	}{
		{"NoNext", func() keyring { r := fullKeyring(); r.next = nil; return r },
			func(keyring) time.Time { return time.Now() }},
		{"NextTooNew", fullKeyring,
			func(r keyring) time.Time { return r.next.CreatedAt.Add(-time.Microsecond) }},
	} {
		su.run(t, "NotReady/"+tc.name, func(t *testing.T, ctx context.Context, s storage.Store) {
			r := tc.ring().create(t, ctx, s)
			err := s.RotateSigningKeys(ctx, newKey("k-new", storage.KeyNext, time.Now()), tc.notBefore(r), time.Now())
			if !errors.Is(err, storage.ErrNotReady) {
				t.Errorf("RotateSigningKeys: %v, want ErrNotReady", err)
			}
			checkKeys(t, ctx, s, r.keys()...)
		})
	}

	su.run(t, "NewNextKIDTaken", func(t *testing.T, ctx context.Context, s storage.Store) {
		r := fullKeyring().create(t, ctx, s)
		for _, k := range r.keys() {
			err := s.RotateSigningKeys(ctx, newKey(k.KID, storage.KeyNext, time.Now()), time.Now(), time.Now())
			if !errors.Is(err, storage.ErrAlreadyExists) {
				t.Errorf("RotateSigningKeys with newNext %s: %v, want ErrAlreadyExists", k.KID, err)
			}
		}
		checkKeys(t, ctx, s, r.keys()...)
	})

	// A refused rotation inside a caller's transaction must leave it usable:
	// in PostgreSQL a failed statement outside a savepoint aborts the whole
	// transaction.
	su.run(t, "RefusedInTxKeepsTx", func(t *testing.T, ctx context.Context, s storage.Store) {
		r := fullKeyring().create(t, ctx, s)
		txCtx := mustBegin(t, ctx, s)
		err := s.RotateSigningKeys(txCtx, newKey(r.active.KID, storage.KeyNext, time.Now()), time.Now(), time.Now())
		if !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("RotateSigningKeys with a taken kid: %v, want ErrAlreadyExists", err)
		}
		if err := s.CreateClient(txCtx, newClient("a")); err != nil {
			t.Fatalf("CreateClient after the refused rotation: %v", err)
		}
		if err := s.Commit(txCtx); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		checkKeys(t, ctx, s, r.keys()...)
	})

	// Every process's rotation job may fire at once: one rotation happens,
	// and the others find the next key gone or brand new.
	su.run(t, "Concurrent", func(t *testing.T, ctx context.Context, s storage.Store) {
		r := fullKeyring().create(t, ctx, s)
		at := usec(time.Now())
		before := time.Now()
		newNexts := make([]*storage.SigningKey, 10)
		errs := parallel(len(newNexts), func(i int) error {
			newNexts[i] = newKey(fmt.Sprintf("k-new-%02d", i), storage.KeyNext, time.Time{})
			newNexts[i].CreatedAt = time.Time{}
			return s.RotateSigningKeys(ctx, newNexts[i], r.next.CreatedAt, at)
		})
		checkOneWins(t, "RotateSigningKeys", errs, storage.ErrNotReady)
		for i, err := range errs {
			if err != nil {
				continue
			}
			checkRecent(t, "newNext CreatedAt", newNexts[i].CreatedAt, before, time.Now())
			want := *newNexts[i]
			want.CreatedAt = usec(want.CreatedAt)
			checkKeys(t, ctx, s, r.rotated(at, &want)...)
		}
		checkStates(t, ctx, s, map[storage.KeyState]int{storage.KeyNext: 1, storage.KeyActive: 1, storage.KeyRetired: 2})
	})

	su.run(t, "DeleteRetired", func(t *testing.T, ctx context.Context, s storage.Store) {
		before := keyBase.Add(100 * time.Hour)
		retired := func(kid string, at time.Time) *storage.SigningKey {
			k := newKey(kid, storage.KeyRetired, keyBase)
			k.RetiredAt = at
			return k
		}
		old := retired("r-old", before.Add(-time.Hour))
		kept := []*storage.SigningKey{
			retired("r-edge", before), // not before `before`
			retired("r-new", before.Add(time.Hour)),
			// When it retired is unknown, so it may still verify tokens.
			retired("r-unknown", time.Time{}),
		}
		// Whatever their RetiredAt says, active and next keys stay.
		for _, st := range []storage.KeyState{storage.KeyActive, storage.KeyNext} {
			k := newKey("k-"+string(st), st, keyBase)
			k.RetiredAt = before.Add(-48 * time.Hour)
			kept = append(kept, k)
		}
		for _, k := range append([]*storage.SigningKey{old}, kept...) {
			if err := s.CreateSigningKey(ctx, k); err != nil {
				t.Fatalf("CreateSigningKey(%s): %v", k.KID, err)
			}
		}
		if n, err := s.DeleteRetiredSigningKeys(ctx, before); err != nil || n != 1 {
			t.Errorf("DeleteRetiredSigningKeys = %d, %v; want 1, nil", n, err)
		}
		if n, err := s.DeleteRetiredSigningKeys(ctx, before); err != nil || n != 0 {
			t.Errorf("DeleteRetiredSigningKeys again = %d, %v; want 0, nil", n, err)
		}
		checkKeys(t, ctx, s, kept...)
	})
}

// keyTxCases are the key writes run inside a transaction, where a rotation
// must be undone as a whole.
func keyTxCases() []txCase {
	ring := fullKeyring()
	at := keyBase.Add(50 * time.Hour)
	newNext := func() *storage.SigningKey { return newKey("k-new", storage.KeyNext, at) }
	setup := func(t *testing.T, ctx context.Context, s storage.Store) { ring.create(t, ctx, s) }
	unchanged := func(t *testing.T, ctx context.Context, s storage.Store) {
		t.Helper()
		checkKeys(t, ctx, s, ring.keys()...)
	}
	return []txCase{
		{
			name:  "RotateSigningKeys",
			setup: setup,
			write: func(ctx context.Context, s storage.Store) error {
				return s.RotateSigningKeys(ctx, newNext(), at, at)
			},
			before: unchanged,
			after: func(t *testing.T, ctx context.Context, s storage.Store) {
				t.Helper()
				checkKeys(t, ctx, s, ring.rotated(at, newNext())...)
			},
		},
		{
			name:  "DeleteRetiredSigningKeys",
			setup: setup,
			write: func(ctx context.Context, s storage.Store) error {
				n, err := s.DeleteRetiredSigningKeys(ctx, ring.retired.RetiredAt.Add(time.Second))
				if err == nil && n != 1 {
					err = fmt.Errorf("deleted %d keys, want 1", n)
				}
				return err
			},
			before: unchanged,
			after: func(t *testing.T, ctx context.Context, s storage.Store) {
				t.Helper()
				checkKeys(t, ctx, s, ring.active, ring.next)
			},
		},
	}
}
