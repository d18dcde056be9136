package keys_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ory/fosite/token/jwt"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

var (
	secret = strings.Repeat("s", 32)
	quiet  = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// newManager opens its own pool, as a separate process would.
func newManager(t *testing.T, dsn string, secrets ...string) *keys.Manager {
	t.Helper()
	pool, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	c, err := keys.NewCipher(secrets)
	if err != nil {
		t.Fatal(err)
	}
	return keys.NewManager(postgres.New(pool), c, keys.Options{Log: quiet})
}

func TestConcurrentFirstStartsCreateOneKey(t *testing.T) {
	t.Parallel()
	store, _, dsn := postgrestest.NewStore(t)
	const n = 4
	managers := make([]*keys.Manager, n)
	for i := range managers {
		managers[i] = newManager(t, dsn, secret)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, m := range managers {
		wg.Go(func() { errs[i] = m.Init(context.Background()) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	list, err := store.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	states := map[storage.KeyState]int{}
	for _, k := range list {
		states[k.State]++
	}
	if len(list) != 2 || states[storage.KeyActive] != 1 || states[storage.KeyNext] != 1 {
		t.Fatalf("%d concurrent first starts created %v, want one active and one next key", n, states)
	}
	want, _, _ := managers[0].JWKS()
	for _, m := range managers[1:] {
		if got, _, _ := m.JWKS(); string(got) != string(want) {
			t.Fatal("managers disagree on the key set")
		}
	}
}

func TestRestartReusesStoredKey(t *testing.T) {
	t.Parallel()
	_, _, dsn := postgrestest.NewStore(t)
	first := newManager(t, dsn, secret)
	if err := first.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	token := sign(t, first.Signer())

	// A later process with the secret rotated in front still reads the key.
	second := newManager(t, dsn, strings.Repeat("n", 40), secret)
	if err := second.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, etagA, _ := first.JWKS()
	b, etagB, _ := second.JWKS()
	if string(a) != string(b) || etagA != etagB {
		t.Fatal("restart published a different key set")
	}
	if _, err := second.Signer().Validate(context.Background(), token); err != nil {
		t.Fatalf("token from before the restart does not verify: %v", err)
	}
}

func TestWrongSecretFailsStartUp(t *testing.T) {
	t.Parallel()
	_, _, dsn := postgrestest.NewStore(t)
	if err := newManager(t, dsn, secret).Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := newManager(t, dsn, strings.Repeat("w", 32)).Init(context.Background())
	if !errors.Is(err, keys.ErrUndecryptable) {
		t.Fatalf("got %v, want ErrUndecryptable", err)
	}
}

func TestJWKSPublishesOnlyPublicMembers(t *testing.T) {
	t.Parallel()
	_, _, dsn := postgrestest.NewStore(t)
	m := newManager(t, dsn, secret)
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	body, etag, _ := m.JWKS()
	if etag == "" {
		t.Error("no ETag")
	}
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("got %d keys, want the active and the next key", len(set.Keys))
	}
	var members []string
	for k := range set.Keys[0] {
		members = append(members, k)
	}
	slices.Sort(members)
	if want := []string{"alg", "e", "kid", "kty", "n", "use"}; !slices.Equal(members, want) {
		t.Fatalf("JWKS members %v, want exactly %v", members, want)
	}
	if set.Keys[0]["alg"] != "RS256" || set.Keys[0]["use"] != "sig" || set.Keys[0]["kty"] != "RSA" {
		t.Fatalf("unexpected key: %v", set.Keys[0])
	}
}

func TestSignerRejectsForgedTokens(t *testing.T) {
	t.Parallel()
	_, _, dsn := postgrestest.NewStore(t)
	m := newManager(t, dsn, secret)
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := m.Signer()
	good := sign(t, s)
	parts := strings.Split(good, ".")
	header := func(h string) string { return base64.RawURLEncoding.EncodeToString([]byte(h)) }
	var kid, nextKid string
	for _, k := range m.Keys() {
		if k.State == storage.KeyActive {
			kid = k.KID
		} else {
			nextKid = k.KID
		}
	}
	cases := map[string]string{
		"alg none":     header(`{"alg":"none","kid":"`+kid+`"}`) + "." + parts[1] + ".",
		"alg HS256":    header(`{"alg":"HS256","kid":"`+kid+`"}`) + "." + parts[1] + "." + parts[2],
		"unknown kid":  header(`{"alg":"RS256","kid":"nope"}`) + "." + parts[1] + "." + parts[2],
		"other kid":    header(`{"alg":"RS256","kid":"`+nextKid+`"}`) + "." + parts[1] + "." + parts[2],
		"no kid":       header(`{"alg":"RS256"}`) + "." + parts[1] + "." + parts[2],
		"tampered":     parts[0] + "." + header(`{"sub":"admin"}`) + "." + parts[2],
		"not a token":  "garbage",
		"wrong signer": sign(t, otherSigner(t)),
	}
	for name, tok := range cases {
		if _, err := s.Validate(context.Background(), tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := s.Validate(context.Background(), good); err != nil {
		t.Fatalf("genuine token rejected: %v", err)
	}
}

func otherSigner(t *testing.T) jwt.Signer {
	_, _, dsn := postgrestest.NewStore(t)
	m := newManager(t, dsn, secret)
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m.Signer()
}

func sign(t *testing.T, s jwt.Signer) string {
	t.Helper()
	tok, _, err := s.Generate(context.Background(), jwt.MapClaims{"sub": "x", "exp": 4102444800}, &jwt.Headers{})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
