package keys

// The token path through the manager: fosite signs with the active key's
// RS256Signer, rotation and revocation swap and close signers. Runs in both
// builds, like rs256_test.go.

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite/token/jwt"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
)

// fakeClock is a settable clock for the key lifecycle.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newMemManager(t *testing.T, clock *fakeClock) *Manager {
	t.Helper()
	c, err := NewCipher([]string{strings.Repeat("s", 32)})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(memory.New(), c, Options{Now: clock.Now})
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func kidIn(t *testing.T, m *Manager, state storage.KeyState) string {
	t.Helper()
	for _, k := range m.Keys() {
		if k.State == state {
			return k.KID
		}
	}
	t.Fatalf("no %s key", state)
	return ""
}

// generate makes a token the way fosite's token endpoint does.
func generate(m *Manager) (string, error) {
	tok, _, err := m.Signer().Generate(context.Background(), jwt.MapClaims{"sub": "x", "exp": 4102444800}, &jwt.Headers{})
	return tok, err
}

// checkToken verifies tok independently of the Signer: with the public key
// the JWKS publishes under its kid, and byte for byte against crypto/rsa.
func checkToken(t *testing.T, m *Manager, tok, wantKID string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	if h["alg"] != "RS256" || h["typ"] != "JWT" || h["kid"] != wantKID {
		t.Fatalf("header %v, want alg RS256, typ JWT, kid %s", h, wantKID)
	}
	body, _, _ := m.JWKS()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	keys := set.Key(wantKID)
	if len(keys) != 1 {
		t.Fatalf("JWKS has %d keys with kid %s", len(keys), wantKID)
	}
	pub := keys[0].Key.(*rsa.PublicKey)
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("signature does not verify with the published key: %v", err)
	}
	if _, err := m.Signer().Decode(context.Background(), tok); err != nil {
		t.Fatalf("Signer.Decode: %v", err)
	}
}

func TestSignerSignsThroughRS256Signer(t *testing.T) {
	t.Parallel()
	m := newMemManager(t, &fakeClock{now: time.Now()})
	key, err := m.Signer().GetPrivateKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// fosite must get the opaque signer, not the *rsa.PrivateKey it would
	// sign with through crypto/rsa.
	if jwk, ok := key.(*josev3.JSONWebKey); !ok {
		t.Fatalf("GetPrivateKey returned %T", key)
	} else if _, ok := jwk.Key.(*opaqueRS256); !ok {
		t.Fatalf("active key holds %T, want the RS256 signer", jwk.Key)
	}
	tok, err := generate(m)
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, m, tok, kidIn(t, m, storage.KeyActive))
}

func TestSignerRotationSignsWithNewKID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := &fakeClock{now: time.Now()}
	m := newMemManager(t, clock)
	first, next := kidIn(t, m, storage.KeyActive), kidIn(t, m, storage.KeyNext)
	old, _ := m.Signer().GetPrivateKey(ctx)
	before, err := generate(m)
	if err != nil {
		t.Fatal(err)
	}

	clock.Add(m.publishFor() + time.Second)
	if err := m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kidIn(t, m, storage.KeyActive); got != next {
		t.Fatalf("active kid after rotation %s, want the former next %s", got, next)
	}
	after, err := generate(m)
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, m, after, next)
	checkToken(t, m, before, first) // the retired key is still published

	// Past retention the retired key is dropped, and its signer closed:
	// a request still holding it cannot sign.
	clock.Add(m.retention() + time.Second)
	if err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	opaque := old.(*josev3.JSONWebKey).Key.(*opaqueRS256)
	if _, err := opaque.SignPayload([]byte("x"), josev3.RS256); !errors.Is(err, ErrSignerClosed) {
		t.Fatalf("signing with the dropped key: %v, want ErrSignerClosed", err)
	}
	tok, err := generate(m)
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, m, tok, next)
}

func TestRevokeClosesRevokedKeysSigner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMemManager(t, &fakeClock{now: time.Now()})
	revoked, next := kidIn(t, m, storage.KeyActive), kidIn(t, m, storage.KeyNext)
	held, _ := m.Signer().GetPrivateKey(ctx) // as a request in flight would
	if err := m.Revoke(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	opaque := held.(*josev3.JSONWebKey).Key.(*opaqueRS256)
	if _, err := opaque.SignPayload([]byte("x"), josev3.RS256); !errors.Is(err, ErrSignerClosed) {
		t.Fatalf("signing with the revoked key: %v, want ErrSignerClosed", err)
	}
	tok, err := generate(m)
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, m, tok, next)
}
