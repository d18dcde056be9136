package keys_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// sealedFixture is testdata/sealed_before_registry.json: one value of each
// kind, sealed by the code before storage.SealedSpecs existed (each package
// spelled its own associated data).
type sealedFixture struct {
	Secret string
	Values []struct {
		Kind      storage.SealedKind
		ID        []string
		Plaintext string
		Sealed    string
	}
}

func loadSealedFixture(t *testing.T) sealedFixture {
	t.Helper()
	raw, err := os.ReadFile("testdata/sealed_before_registry.json")
	if err != nil {
		t.Fatal(err)
	}
	var f sealedFixture
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// fixtureValues returns the fixture's values by kind, failing unless it
// holds one of every kind storage.SealedSpecs lists.
func fixtureValues(t *testing.T, f sealedFixture) map[storage.SealedKind]storage.Sealed {
	t.Helper()
	out := map[storage.SealedKind]storage.Sealed{}
	for _, v := range f.Values {
		b, err := hex.DecodeString(v.Sealed)
		if err != nil {
			t.Fatal(err)
		}
		out[v.Kind] = storage.Sealed{Kind: v.Kind, ID: v.ID, Value: b}
	}
	for _, spec := range storage.SealedSpecs() {
		if _, ok := out[spec.Kind]; !ok {
			t.Errorf("the fixture has no %s value: seal one with its AAD and add it", spec.Kind)
		}
	}
	return out
}

// Values sealed before the registry still open with the associated data
// the registry builds: the byte format did not move.
func TestSealedBeforeRegistryStillOpens(t *testing.T) {
	t.Parallel()
	f := loadSealedFixture(t)
	c, err := keys.NewCipher([]string{f.Secret})
	if err != nil {
		t.Fatal(err)
	}
	values := fixtureValues(t, f)
	for _, want := range f.Values {
		v := values[want.Kind]
		aad, err := v.AAD()
		if err != nil {
			t.Fatalf("%s: %v", v.Name(), err)
		}
		got, err := c.Open(v.Value, aad)
		if err != nil || string(got) != want.Plaintext {
			t.Errorf("%s: Open = %q, %v; want %q", v.Name(), got, err, want.Plaintext)
		}
	}
}

// Reseal moves values sealed under an old secret (by the code before the
// registry) to the new first secret, every kind, and leaves them bound to
// their place; a second run has nothing to do.
func TestResealMovesEveryKind(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := loadSealedFixture(t)
	values := fixtureValues(t, f)
	store, _, _ := postgrestest.NewStore(t)
	storeFixture(t, ctx, store, values)

	newSecret := strings.Repeat("n", 40)
	rotating, err := keys.NewCipher([]string{newSecret, f.Secret})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := keys.Reseal(ctx, store, rotating); err != nil || n != len(values) {
		t.Fatalf("Reseal = %d, %v; want %d, nil", n, err, len(values))
	}
	if n, err := keys.Reseal(ctx, store, rotating); err != nil || n != 0 {
		t.Fatalf("second Reseal = %d, %v; want 0, nil", n, err)
	}

	// Only the new secret now: every value opens, with its AAD.
	only, err := keys.NewCipher([]string{newSecret})
	if err != nil {
		t.Fatal(err)
	}
	plain := map[storage.SealedKind]string{}
	for _, v := range f.Values {
		plain[v.Kind] = v.Plaintext
	}
	seen := map[storage.SealedKind]bool{}
	if _, err := store.ResealAll(ctx, func(s storage.Sealed) ([]byte, error) {
		seen[s.Kind] = true
		aad, err := s.AAD()
		if err != nil {
			return nil, err
		}
		got, err := only.Open(s.Value, aad)
		if err != nil || string(got) != plain[s.Kind] {
			t.Errorf("%s after Reseal: %q, %v; want %q", s.Name(), got, err, plain[s.Kind])
		}
		return s.Value, nil
	}); err != nil {
		t.Fatal(err)
	}
	for kind := range values {
		if !seen[kind] {
			t.Errorf("no %s value after Reseal", kind)
		}
	}
}

// A value no configured secret opens stops Reseal with an error naming the
// value, never an openid in clear.
func TestResealNamesWhatItCannotOpen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := loadSealedFixture(t)
	values := fixtureValues(t, f)
	store, _, _ := postgrestest.NewStore(t)
	storeFixture(t, ctx, store, map[storage.SealedKind]storage.Sealed{storage.SealedSessionKey: values[storage.SealedSessionKey]})
	other, err := keys.NewCipher([]string{strings.Repeat("o", 40)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = keys.Reseal(ctx, store, other)
	openID := values[storage.SealedSessionKey].ID[1]
	if !errors.Is(err, keys.ErrUndecryptable) || !strings.Contains(err.Error(), string(storage.SealedSessionKey)) ||
		strings.Contains(err.Error(), openID) {
		t.Fatalf("Reseal = %v; want ErrUndecryptable naming the session key without its openid", err)
	}
}

// storeFixture writes the values through the store's ordinary methods, as
// the code that sealed them did.
func storeFixture(t *testing.T, ctx context.Context, store *postgres.Store, values map[storage.SealedKind]storage.Sealed) {
	t.Helper()
	for kind, v := range values {
		var err error
		switch kind {
		case storage.SealedSigningKey:
			err = store.CreateSigningKey(ctx, &storage.SigningKey{KID: v.ID[0], Algorithm: "RS256", State: storage.KeyRetired, PrivateKey: v.Value})
		case storage.SealedAppSecret:
			err = store.CreateClient(ctx, &storage.Client{ID: v.ID[0], WeChatAppID: v.ID[1], WeChatAppSecret: v.Value, TokenEndpointAuthMethod: "none"})
		case storage.SealedSessionKey:
			_, err = store.LinkWeChatIdentity(ctx, &storage.WeChatIdentity{AppID: v.ID[0], OpenID: v.ID[1], SessionKey: v.Value}, "user-1")
		case storage.SealedWeChatToken:
			err = store.SaveWeChatToken(ctx, &storage.WeChatToken{AppID: v.ID[0], Token: v.Value})
		default:
			t.Fatalf("storeFixture does not know how to store a %s value", kind)
		}
		if err != nil {
			t.Fatalf("store %s: %v", v.Name(), err)
		}
	}
}
