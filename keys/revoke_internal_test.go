package keys

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ory/fosite/token/jwt"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
)

// When the reload after a revocation fails, Revoke falls back on forget:
// the process must stop trusting the key at once, not at its next reload,
// even if that leaves it nothing to sign with.
func TestForgetFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := NewCipher([]string{strings.Repeat("s", 32)})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(memory.New(), c, Options{})
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	var active, next string
	for _, k := range m.Keys() {
		switch k.State {
		case storage.KeyActive:
			active = k.KID
		case storage.KeyNext:
			next = k.KID
		}
	}
	s := m.Signer()
	old, _, err := s.Generate(ctx, jwt.MapClaims{"sub": "x", "exp": 4102444800}, &jwt.Headers{})
	if err != nil {
		t.Fatal(err)
	}

	m.forget(active)

	if _, err := s.Validate(ctx, old); err == nil {
		t.Error("a token signed by the forgotten key still verifies")
	}
	if jwks, _, _ := m.JWKS(); strings.Contains(string(jwks), active) || !strings.Contains(string(jwks), next) {
		t.Errorf("JWKS after forgetting %s = %s, want only %s", active, jwks, next)
	}
	if _, _, err := s.Generate(ctx, jwt.MapClaims{"sub": "x"}, &jwt.Headers{}); !errors.Is(err, ErrNoActiveKey) {
		t.Errorf("signing with no active key: %v, want ErrNoActiveKey", err)
	}
	// The next reload restores signing from the store.
	if err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Generate(ctx, jwt.MapClaims{"sub": "x"}, &jwt.Headers{}); err != nil {
		t.Errorf("signing after the reload: %v", err)
	}
}
