package keys

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/wxidp/wxidp/storage"
)

// ErrRevokedIncomplete means a revocation was stored, but this process
// could not finish updating its keys afterwards. If it could not reread
// them, it dropped the revoked key from what it had loaded (and may have no
// key to sign with until its next reload); if it could not create a new
// next key, its next reload does.
var ErrRevokedIncomplete = errors.New("keys: signing key revoked, but updating this process's keys failed")

// Revoke removes the signing key kid from the JWKS and from signing at once,
// for a key that leaked and cannot wait for a rotation: if it was active,
// the next key takes over without the publication wait a rotation keeps
// (or, with no next key, a new key does), and a new next key is published.
// This process stops signing with the key, publishing it and verifying
// tokens it signed (introspection and userinfo refuse them) before Revoke
// returns; other processes follow at their next reload (ReloadEvery).
// An unknown kid is storage.ErrNotFound; ErrRevokedIncomplete means the key
// is revoked all the same.
func (m *Manager) Revoke(ctx context.Context, kid string) error {
	rec, err := m.NewKey(storage.KeyNext)
	if err != nil {
		return err
	}
	if err := m.store.RevokeSigningKey(ctx, kid, rec, m.opts.Now().UTC()); err != nil {
		return fmt.Errorf("keys: revoke %s: %w", kid, err)
	}
	if err := m.Reload(ctx); err != nil {
		// The key is revoked in the store, but this process has not read
		// the new set. Fail closed rather than trust a leaked key until the
		// next reload: drop it from what is loaded, even if that leaves
		// nothing to sign with for now.
		m.forget(kid)
		return fmt.Errorf("%w: %s: %w", ErrRevokedIncomplete, kid, err)
	}
	// The revoked key was the only one: rec became active, and the
	// lifecycle needs a next key published ahead of the next rotation.
	if err := m.ensureNext(ctx); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrRevokedIncomplete, kid, err)
	}
	return nil
}

// ensureNext creates a next key if the loaded set has none, as after
// revoking the only key.
func (m *Manager) ensureNext(ctx context.Context) error {
	if m.hasNext() {
		return nil
	}
	if err := m.create(ctx, storage.KeyNext); err != nil {
		return err
	}
	return m.Reload(ctx)
}

// forget drops kid from the loaded snapshot without reading the store.
func (m *Manager) forget(kid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var recs []storage.SigningKey
	for _, r := range m.set.Load().list {
		if r.KID != kid {
			recs = append(recs, r)
		}
	}
	// Every remaining key is already decrypted, so build cannot fail on
	// the store or the secrets; should it fail anyway, publish nothing.
	set, err := m.build(recs)
	if err != nil {
		set = &keySet{verify: map[string]*rsa.PublicKey{}, jwks: []byte(`{"keys":[]}`), etag: `"empty"`}
	}
	m.publish(set)
}
