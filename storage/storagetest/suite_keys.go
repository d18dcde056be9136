package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
)

func newKey(kid string, state storage.KeyState, created time.Time) *storage.SigningKey {
	k := &storage.SigningKey{
		KID:        kid,
		Algorithm:  "RS256",
		State:      state,
		PrivateKey: []byte("ciphertext-of-" + kid),
		CreatedAt:  usec(created),
	}
	if state != storage.KeyNext {
		k.ActivatedAt = usec(created.Add(time.Minute))
	}
	if state == storage.KeyRetired {
		k.RetiredAt = usec(created.Add(time.Hour))
	}
	return k
}

func testSigningKeys(t *testing.T, su suite) {
	su.run(t, "CreateListNewestFirst", func(t *testing.T, ctx context.Context, s storage.Store) {
		keys, err := s.ListSigningKeys(ctx)
		if err != nil || len(keys) != 0 {
			t.Fatalf("ListSigningKeys of an empty store = %v, %v; want none, nil", keys, err)
		}
		now := time.Now()
		// Created out of order so a backend listing by insertion fails.
		want := []*storage.SigningKey{
			newKey("k-next", storage.KeyNext, now),
			newKey("k-active", storage.KeyActive, now.Add(-24*time.Hour)),
			newKey("k-retired", storage.KeyRetired, now.Add(-48*time.Hour)),
		}
		for _, i := range []int{1, 2, 0} {
			if err := s.CreateSigningKey(ctx, want[i]); err != nil {
				t.Fatalf("CreateSigningKey(%s): %v", want[i].KID, err)
			}
		}
		got, err := s.ListSigningKeys(ctx)
		if err != nil {
			t.Fatalf("ListSigningKeys: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("ListSigningKeys returned %d keys, want %d", len(got), len(want))
		}
		for i := range want {
			checkKey(t, &got[i], want[i])
		}
	})

	su.run(t, "CreatedAtSetByStore", func(t *testing.T, ctx context.Context, s storage.Store) {
		k := newKey("k", storage.KeyNext, time.Time{})
		k.CreatedAt = time.Time{}
		before := time.Now()
		if err := s.CreateSigningKey(ctx, k); err != nil {
			t.Fatalf("CreateSigningKey: %v", err)
		}
		after := time.Now()
		got, err := s.ListSigningKeys(ctx)
		if err != nil || len(got) != 1 {
			t.Fatalf("ListSigningKeys = %v, %v; want one key", got, err)
		}
		checkRecent(t, "CreatedAt", got[0].CreatedAt, before, after)
	})

	su.run(t, "DuplicateKID", func(t *testing.T, ctx context.Context, s storage.Store) {
		now := time.Now()
		if err := s.CreateSigningKey(ctx, newKey("k", storage.KeyNext, now)); err != nil {
			t.Fatalf("CreateSigningKey: %v", err)
		}
		if err := s.CreateSigningKey(ctx, newKey("k", storage.KeyRetired, now)); !errors.Is(err, storage.ErrAlreadyExists) {
			t.Fatalf("CreateSigningKey of a taken kid: %v, want ErrAlreadyExists", err)
		}
	})

	su.run(t, "AtMostOneActive", func(t *testing.T, ctx context.Context, s storage.Store) {
		now := time.Now()
		steps := []struct {
			key     *storage.SigningKey
			wantErr error
		}{
			{newKey("a1", storage.KeyActive, now), nil},
			{newKey("n1", storage.KeyNext, now), nil},
			{newKey("r1", storage.KeyRetired, now), nil},
			{newKey("a2", storage.KeyActive, now), storage.ErrAlreadyExists},
		}
		for _, st := range steps {
			err := s.CreateSigningKey(ctx, st.key)
			if !errors.Is(err, st.wantErr) {
				t.Errorf("CreateSigningKey(%s, %s): %v, want %v", st.key.KID, st.key.State, err, st.wantErr)
			}
		}
		checkOneActive(t, ctx, s, 3)
	})

	// Every replica creates an active key on its first start; the store, not
	// the callers, must make exactly one of them win.
	su.run(t, "ConcurrentActive", func(t *testing.T, ctx context.Context, s storage.Store) {
		const n = 20
		now := time.Now()
		errs := parallel(n, func(i int) error {
			return s.CreateSigningKey(ctx, newKey(fmt.Sprintf("k%02d", i), storage.KeyActive, now))
		})
		wins := 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, storage.ErrAlreadyExists):
				t.Errorf("CreateSigningKey #%d: %v, want nil or ErrAlreadyExists", i, err)
			}
		}
		if wins != 1 {
			t.Errorf("%d concurrent active keys were created, want exactly 1", wins)
		}
		checkOneActive(t, ctx, s, 1)
	})

	// A next key is published ahead of its activation; two would leave a
	// rotation two candidates.
	su.run(t, "AtMostOneNext", func(t *testing.T, ctx context.Context, s storage.Store) {
		now := time.Now()
		n1, a1 := newKey("n1", storage.KeyNext, now), newKey("a1", storage.KeyActive, now)
		for _, k := range []*storage.SigningKey{n1, a1} {
			if err := s.CreateSigningKey(ctx, k); err != nil {
				t.Fatalf("CreateSigningKey(%s): %v", k.KID, err)
			}
		}
		if err := s.CreateSigningKey(ctx, newKey("n2", storage.KeyNext, now)); !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("CreateSigningKey of a second next key: %v, want ErrAlreadyExists", err)
		}
		checkKeys(t, ctx, s, n1, a1)
	})

	su.run(t, "ConcurrentNext", func(t *testing.T, ctx context.Context, s storage.Store) {
		now := time.Now()
		errs := parallel(20, func(i int) error {
			return s.CreateSigningKey(ctx, newKey(fmt.Sprintf("k%02d", i), storage.KeyNext, now))
		})
		checkOneWins(t, "CreateSigningKey(next)", errs, storage.ErrAlreadyExists)
		checkStates(t, ctx, s, map[storage.KeyState]int{storage.KeyNext: 1})
	})

	testKeyRevocation(t, su)
}

func checkOneActive(t *testing.T, ctx context.Context, s storage.Store, total int) {
	t.Helper()
	keys, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	active := 0
	for _, k := range keys {
		if k.State == storage.KeyActive {
			active++
		}
	}
	if len(keys) != total || active != 1 {
		t.Errorf("store holds %d keys, %d active; want %d keys, 1 active", len(keys), active, total)
	}
}

func checkKey(t *testing.T, got, want *storage.SigningKey) {
	t.Helper()
	if got.KID != want.KID || got.Algorithm != want.Algorithm || got.State != want.State ||
		!bytes.Equal(got.PrivateKey, want.PrivateKey) {
		t.Errorf("key = {%s %s %s %q}, want {%s %s %s %q}",
			got.KID, got.Algorithm, got.State, got.PrivateKey, want.KID, want.Algorithm, want.State, want.PrivateKey)
	}
	for _, f := range []struct {
		name      string
		got, want time.Time
	}{
		{"CreatedAt", got.CreatedAt, want.CreatedAt},
		{"ActivatedAt", got.ActivatedAt, want.ActivatedAt},
		{"RetiredAt", got.RetiredAt, want.RetiredAt},
	} {
		// Equal alone would not catch a NULL read back as the Unix epoch.
		if f.got.IsZero() != f.want.IsZero() || !f.got.Equal(f.want) {
			t.Errorf("%s %s = %v, want %v", want.KID, f.name, f.got, f.want)
		}
	}
}
