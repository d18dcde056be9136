package keys_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// kidsByState returns the kid of each key m has loaded, by state.
func kidsByState(m *keys.Manager) map[storage.KeyState][]string {
	out := map[storage.KeyState][]string{}
	for _, k := range m.Keys() {
		out[k.State] = append(out[k.State], k.KID)
	}
	return out
}

func tokenKID(t *testing.T, token string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func TestRevokeActiveKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, _, dsn := postgrestest.NewStore(t)
	m := newManager(t, dsn, secret)
	other := newManager(t, dsn, secret) // another process sharing the database
	for _, mm := range []*keys.Manager{m, other} {
		if err := mm.Init(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before := kidsByState(m)
	revoked, next := before[storage.KeyActive][0], before[storage.KeyNext][0]
	old := sign(t, m.Signer())

	if err := m.Revoke(ctx, revoked); err != nil {
		t.Fatalf("Revoke: %v", err)
	}

	after := kidsByState(m)
	if len(after[storage.KeyActive]) != 1 || after[storage.KeyActive][0] != next {
		t.Errorf("active keys after revocation = %v, want the former next key %s", after[storage.KeyActive], next)
	}
	if len(after[storage.KeyNext]) != 1 || after[storage.KeyNext][0] == next {
		t.Errorf("next keys after revocation = %v, want one new next key", after[storage.KeyNext])
	}
	if jwks, _, _ := m.JWKS(); strings.Contains(string(jwks), revoked) {
		t.Errorf("JWKS still lists the revoked kid %s", revoked)
	}
	if _, err := m.Signer().Validate(ctx, old); err == nil {
		t.Error("a token signed by the revoked key still verifies")
	}
	fresh := sign(t, m.Signer())
	if kid := tokenKID(t, fresh); kid != next {
		t.Errorf("new token signed with %s, want the new active key %s", kid, next)
	}
	if _, err := m.Signer().Validate(ctx, fresh); err != nil {
		t.Errorf("a token signed after the revocation does not verify: %v", err)
	}

	// Another process trusts the key until its next reload (the window
	// docs/keys.md states), then refuses it and accepts the new key.
	if _, err := other.Signer().Validate(ctx, old); err != nil {
		t.Fatalf("before its reload, another process refuses an old token: %v", err)
	}
	if err := other.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Signer().Validate(ctx, old); err == nil {
		t.Error("after its reload, another process still accepts a token signed by the revoked key")
	}
	if _, err := other.Signer().Validate(ctx, fresh); err != nil {
		t.Errorf("after its reload, another process refuses the new key's token: %v", err)
	}
}

// The only key, as after a first start that stopped before creating the
// next key: a new key must take over and a next key be published.
func TestRevokeOnlyKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, _, dsn := postgrestest.NewStore(t)
	m := newManager(t, dsn, secret)
	only, err := m.NewKey(storage.KeyActive)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateSigningKey(ctx, only); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Revoke(ctx, only.KID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	after := kidsByState(m)
	if len(after[storage.KeyActive]) != 1 || len(after[storage.KeyNext]) != 1 || after[storage.KeyActive][0] == only.KID {
		t.Fatalf("keys after revoking the only key = %v, want a new active and a new next key", after)
	}
	if kid := tokenKID(t, sign(t, m.Signer())); kid != after[storage.KeyActive][0] {
		t.Errorf("token signed with %s, want %s", kid, after[storage.KeyActive][0])
	}
}

func TestRevokeUnknownKID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, _, dsn := postgrestest.NewStore(t)
	m := newManager(t, dsn, secret)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	before, _, _ := m.JWKS()
	if err := m.Revoke(ctx, "no-such-kid"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Revoke of an unknown kid: %v, want storage.ErrNotFound", err)
	}
	if after, _, _ := m.JWKS(); string(after) != string(before) {
		t.Error("a refused revocation changed the key set")
	}
}
