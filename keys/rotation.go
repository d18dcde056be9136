package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// ErrNotReady means a rotation was refused: the next key has not been
// published for a JWKS cache lifetime yet, so verifiers might not know it.
var ErrNotReady = errors.New("keys: the next key has not been published long enough to sign; retry later")

// Rotate promotes the next key to active, retires the active key and
// creates a new next key, for all processes at once: they pick it up at
// their next reload. Only one of concurrent rotations succeeds.
func (m *Manager) Rotate(ctx context.Context) error {
	rec, err := m.NewKey(storage.KeyNext)
	if err != nil {
		return err
	}
	now := m.opts.Now().UTC()
	notBefore := now.Add(-m.publishFor())
	if err := m.store.RotateSigningKeys(ctx, rec, notBefore, now); err != nil {
		if errors.Is(err, storage.ErrNotReady) {
			return ErrNotReady
		}
		return fmt.Errorf("keys: rotate: %w", err)
	}
	m.opts.Log.InfoContext(ctx, "signing keys rotated", "new_next", rec.KID)
	return m.Reload(ctx)
}

// publishFor is how long a next key is published before it may sign: a
// verifier that fetched the JWKS from the slowest process just before it
// reloaded still has the key by then, even if the process that created the
// key and the one rotating disagree on the time by up to ClockSkew.
func (m *Manager) publishFor() time.Duration {
	return m.opts.JWKSMaxAge + m.opts.ReloadEvery + m.opts.ClockSkew
}

// retention is how long a retired key stays published: the slowest
// process may sign with it for ReloadEvery after the rotation, and what it
// signed is valid for TokenLifetime.
func (m *Manager) retention() time.Duration {
	return m.opts.TokenLifetime + m.opts.ReloadEvery + m.opts.ClockSkew
}

// Run keeps this process's keys current until ctx ends: every ReloadEvery it
// rereads them, rotates when the active key is older than RotateEvery, and
// deletes retired keys no token can need.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.opts.ReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.tick(ctx); err != nil && ctx.Err() == nil {
			m.opts.Log.Error("signing keys", "err", err)
		}
	}
}

func (m *Manager) tick(ctx context.Context) error {
	if err := m.Reload(ctx); err != nil {
		return err
	}
	// A revocation that could not create its next key leaves it to here.
	if err := m.ensureNext(ctx); err != nil {
		return err
	}
	if m.rotationDue() {
		// Every process may try; the store lets one win.
		before := m.activeKID()
		err := m.Rotate(ctx)
		if err != nil && !errors.Is(err, ErrNotReady) {
			return err
		}
		if err == nil && m.opts.OnScheduledRotation != nil {
			m.opts.OnScheduledRotation(ctx, m.activeKID(), before)
		}
	}
	n, err := m.store.DeleteRetiredSigningKeys(ctx, m.opts.Now().Add(-m.retention()))
	if err != nil {
		return fmt.Errorf("keys: delete retired keys: %w", err)
	}
	if n > 0 {
		m.opts.Log.Info("retired signing keys deleted", "count", n)
	}
	return nil
}

func (m *Manager) rotationDue() bool {
	if m.opts.RotateEvery <= 0 {
		return false
	}
	for _, k := range m.set.Load().list {
		if k.State == storage.KeyActive {
			return !k.ActivatedAt.IsZero() && m.opts.Now().Sub(k.ActivatedAt) >= m.opts.RotateEvery
		}
	}
	return false
}

// activeKID is the kid of the active key as this process last loaded it.
func (m *Manager) activeKID() string {
	for _, k := range m.Keys() {
		if k.State == storage.KeyActive {
			return k.KID
		}
	}
	return ""
}
