package memory

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// CreateSigningKey stores a copy of k, keeping at most one key active and
// one next, as the PostgreSQL backend's partial unique indexes do.
func (s *Store) CreateSigningKey(ctx context.Context, k *storage.SigningKey) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.keys[k.KID]; ok {
		return fmt.Errorf("memory: signing key %q: %w", k.KID, storage.ErrAlreadyExists)
	}
	if k.State == storage.KeyActive || k.State == storage.KeyNext {
		if other, ok := s.keyIn(k.State); ok {
			return fmt.Errorf("memory: signing key %q: key %q is already %s: %w", k.KID, other.KID, k.State, storage.ErrAlreadyExists)
		}
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	stored := *k
	stored.PrivateKey = bytes.Clone(k.PrivateKey)
	put(t, s.keys, k.KID, stored)
	return nil
}

// keyIn returns the key in state (active or next, of which there is at
// most one). The caller holds the mutex.
func (s *Store) keyIn(state storage.KeyState) (storage.SigningKey, bool) {
	for _, k := range s.keys {
		if k.State == state {
			return k, true
		}
	}
	return storage.SigningKey{}, false
}

// ListSigningKeys returns copies, newest first; ties go by kid so the order
// is stable.
func (s *Store) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]storage.SigningKey, 0, len(s.keys))
	for _, k := range s.keys {
		k.PrivateKey = bytes.Clone(k.PrivateKey)
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b storage.SigningKey) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.KID, b.KID)
	})
	return out, nil
}

// RotateSigningKeys promotes the next key, retires the active one and
// stores newNext as next, all under the store mutex, so concurrent
// rotations run one after another and every one after the first finds a
// next key created too recently (ErrNotReady), as in the PostgreSQL backend.
// newNext is stored as a next key whatever its State and activation or
// retirement times say, and on success updated to what was stored. A zero
// now means the current time.
func (s *Store) RotateSigningKeys(ctx context.Context, newNext *storage.SigningKey, notBefore, at time.Time) error {
	if newNext == nil {
		return errors.New("memory: rotate signing keys: newNext is nil")
	}
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	next, ok := s.keyIn(storage.KeyNext)
	if !ok {
		return fmt.Errorf("memory: rotate signing keys: no next key: %w", storage.ErrNotReady)
	}
	if next.CreatedAt.After(notBefore) {
		return fmt.Errorf("memory: rotate signing keys: next key %s created %v, after %v: %w",
			next.KID, next.CreatedAt.UTC(), notBefore.UTC(), storage.ErrNotReady)
	}
	if _, ok := s.keys[newNext.KID]; ok {
		return fmt.Errorf("memory: rotate signing keys: signing key %q: %w", newNext.KID, storage.ErrAlreadyExists)
	}
	// At the precision PostgreSQL keeps, so both backends hand back the
	// same times.
	stamp := now()
	if !at.IsZero() {
		stamp = at.UTC().Truncate(time.Microsecond)
	}
	if active, ok := s.keyIn(storage.KeyActive); ok {
		active.State, active.RetiredAt = storage.KeyRetired, stamp
		put(t, s.keys, active.KID, active)
	}
	next.State, next.ActivatedAt = storage.KeyActive, stamp
	put(t, s.keys, next.KID, next)
	k := storage.SigningKey{KID: newNext.KID, Algorithm: newNext.Algorithm, State: storage.KeyNext,
		PrivateKey: bytes.Clone(newNext.PrivateKey), CreatedAt: newNext.CreatedAt}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	put(t, s.keys, k.KID, k)
	*newNext = k
	newNext.PrivateKey = bytes.Clone(k.PrivateKey)
	return nil
}

// RevokeSigningKey deletes kid and fills its place (see
// storage.KeyStore) under the store mutex, so it runs before or after a
// concurrent rotation or revocation, never between its steps, as the
// PostgreSQL backend's row locks arrange. A zero now means the current
// time.
func (s *Store) RevokeSigningKey(ctx context.Context, kid string, newNext *storage.SigningKey, at time.Time) error {
	if newNext == nil {
		return errors.New("memory: revoke signing key: newNext is nil")
	}
	if newNext.KID == kid {
		return fmt.Errorf("memory: revoke signing key: newNext reuses kid %q: %w", kid, storage.ErrAlreadyExists)
	}
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	old, ok := s.keys[kid]
	if !ok {
		return fmt.Errorf("memory: revoke signing key %q: %w", kid, storage.ErrNotFound)
	}
	if old.State == storage.KeyRetired {
		drop(t, s.keys, kid)
		return nil
	}
	if _, ok := s.keys[newNext.KID]; ok {
		return fmt.Errorf("memory: revoke signing key: signing key %q: %w", newNext.KID, storage.ErrAlreadyExists)
	}
	stamp := now()
	if !at.IsZero() {
		stamp = at.UTC().Truncate(time.Microsecond)
	}
	drop(t, s.keys, kid)
	k := storage.SigningKey{KID: newNext.KID, Algorithm: newNext.Algorithm, State: storage.KeyNext,
		PrivateKey: bytes.Clone(newNext.PrivateKey), CreatedAt: newNext.CreatedAt}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	if old.State == storage.KeyActive {
		if next, ok := s.keyIn(storage.KeyNext); ok {
			next.State, next.ActivatedAt = storage.KeyActive, stamp
			put(t, s.keys, next.KID, next)
		} else {
			// No next key to take over: newNext signs at once, so an
			// active key always remains.
			k.State, k.ActivatedAt = storage.KeyActive, stamp
		}
	}
	put(t, s.keys, k.KID, k)
	*newNext = k
	newNext.PrivateKey = bytes.Clone(k.PrivateKey)
	return nil
}

// DeleteRetiredSigningKeys deletes retired keys retired before `before`. A
// retired key with no RetiredAt is kept, as the PostgreSQL backend keeps a
// NULL retired_at: when it retired is unknown.
func (s *Store) DeleteRetiredSigningKeys(ctx context.Context, before time.Time) (int, error) {
	t, err := s.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for kid, k := range s.keys {
		if k.State == storage.KeyRetired && !k.RetiredAt.IsZero() && k.RetiredAt.Before(before) {
			drop(t, s.keys, kid)
			n++
		}
	}
	return n, nil
}
