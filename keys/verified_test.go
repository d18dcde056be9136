package keys_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// TestVerifiedTokensRemembered: a token verified once is not verified
// again while the key set stays the same, but that never outlives the key:
// after a revocation (here, or in another process after its reload) the
// same token fails at once. A forged variant of a remembered token is not
// taken for it, and a caller changing the claims it got changes nothing
// for the next one.
func TestVerifiedTokensRemembered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, _, dsn := postgrestest.NewStore(t)
	m, other := newManager(t, dsn, secret), newManager(t, dsn, secret)
	for _, mm := range []*keys.Manager{m, other} {
		if err := mm.Init(ctx); err != nil {
			t.Fatal(err)
		}
	}
	good := sign(t, m.Signer())
	for range 3 {
		for _, mm := range []*keys.Manager{m, other} {
			tok, err := mm.Signer().Decode(ctx, good)
			if err != nil {
				t.Fatalf("genuine token: %v", err)
			}
			tok.Claims["sub"] = "admin" // the caller's copy
		}
	}
	if tok, err := m.Signer().Decode(ctx, good); err != nil || tok.Claims["sub"] != "x" {
		t.Errorf("after a caller changed its claims: sub %v, %v; want x", tok.Claims["sub"], err)
	}
	parts := strings.Split(good, ".")
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","exp":4102444800}`)) + "." + parts[2]
	if _, err := m.Signer().Decode(ctx, forged); err == nil {
		t.Error("a remembered token's signature on other claims verifies")
	}

	active := kidsByState(m)[storage.KeyActive][0]
	if err := m.Revoke(ctx, active); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Signer().Decode(ctx, good); err == nil {
		t.Error("after the revocation of its key, a remembered token still verifies")
	}
	if err := other.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Signer().Decode(ctx, good); err == nil {
		t.Error("after another process's reload, a token it remembered still verifies there")
	}
}
