package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// fastKeys shortens the key lifecycle so tests see rotations in seconds:
// JWKS cached 1 s, keys reread every 500 ms, 200 ms of clock skew (so a key
// is published 1.7 s before it signs), tokens live 2 s.
func fastKeys(c *serveConfig) {
	c.JWKSMaxAge = time.Second
	c.KeyReload = 500 * time.Millisecond
	c.AccessTokenTTL = 2 * time.Second
	c.IDTokenTTL = 2 * time.Second
	c.keySkew = 200 * time.Millisecond
	c.KeyRotation = 0
}

// cachingVerifier is a standards-following verifier at its strictest: it
// caches the JWKS for exactly the max-age the server sends and never
// refetches early, not even for an unknown kid.
type cachingVerifier struct {
	url     string
	mu      sync.Mutex
	keys    jose.JSONWebKeySet
	expires time.Time
}

func (v *cachingVerifier) verify(t *testing.T, token string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if time.Now().After(v.expires) {
		resp, err := http.Get(v.url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		maxAge, _ := strconv.Atoi(strings.TrimPrefix(resp.Header.Get("Cache-Control"), "public, max-age="))
		if maxAge <= 0 {
			t.Fatalf("JWKS Cache-Control %q", resp.Header.Get("Cache-Control"))
		}
		raw, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(raw, &v.keys); err != nil {
			return err
		}
		v.expires = time.Now().Add(time.Duration(maxAge) * time.Second)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return err
	}
	keys := v.keys.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) == 0 {
		return errUnknownKid
	}
	_, err = jws.Verify(keys[0])
	return err
}

type errString string

func (e errString) Error() string { return string(e) }

const errUnknownKid = errString("kid not in the cached JWKS")

func (s *server) rotate(t *testing.T) int {
	t.Helper()
	status, _ := s.adminRaw(t, http.MethodPost, "/admin/keys/rotate", testAdminToken, "", nil)
	return status
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header.KeyID
}

// TestRotationInvisibleToCachingVerifiers: tokens issued continuously
// across two rotations all verify against a JWKS cached for its max-age.
func TestRotationInvisibleToCachingVerifiers(t *testing.T) {
	t.Parallel()
	cfg := testConfig(migratedDB(t))
	fastKeys(&cfg)
	srv := startServer(t, cfg)
	secret := srv.registerClient(t, map[string]any{"client_id": "svc"})
	v := &cachingVerifier{url: srv.issuer + "/.well-known/jwks.json"}
	form := url.Values{"grant_type": {"client_credentials"}}

	if status := srv.rotate(t); status != http.StatusConflict {
		t.Fatalf("rotation right after start: %d, want 409 (next key not published long enough)", status)
	}
	kids := map[string]bool{}
	rotations := 0
	deadline := time.Now().Add(20 * time.Second)
	for rotations < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d rotations succeeded", rotations)
		}
		if srv.rotate(t) == http.StatusOK {
			rotations++
		}
		for range 5 {
			_, _, body := srv.postToken(t, "svc", secret, form)
			tok := body["access_token"].(string)
			kids[kidOf(t, tok)] = true
			if err := v.verify(t, tok); err != nil {
				t.Fatalf("after %d rotations a caching verifier rejects a fresh token: %v", rotations, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(kids) != 3 {
		t.Errorf("tokens were signed by %d keys across two rotations, want 3", len(kids))
	}

	// Retired keys leave the JWKS once every token they signed has expired
	// (2 s tokens + 500 ms reload + 200 ms skew), and the store.
	deadline = time.Now().Add(15 * time.Second)
	for {
		_, list := srv.adminJSON(t, http.MethodGet, "/admin/keys", testAdminToken, nil)
		if n := len(list["keys"].([]any)); n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retired keys never dropped out: %v", list)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := len(fetchJWKS(t, srv.issuer).Keys); n != 2 {
		t.Fatalf("JWKS has %d keys, want active + next", n)
	}
}

// TestRotationReachesEveryProcess: after a rotation at A, B signs with the
// new key within its reload interval, without restart; A's tokens signed
// with the new key work at B at once; tokens B signed with the old key still
// introspect active at A; a refresh after the rotation signs with the new
// key (no kid is kept in the session).
func TestRotationReachesEveryProcess(t *testing.T) {
	t.Parallel()
	dsn := migratedDB(t)
	wx := wechattest.NewServer(t)
	cfg := testConfig(dsn)
	fastKeys(&cfg)
	cfg.AccessTokenTTL = time.Minute
	cfg.WeChatAPIBase = wx.URL
	a, b := startServer(t, cfg), startServer(t, cfg)
	ea := &lifecycleEnv{wechatEnv: &wechatEnv{server: a, wx: wx}}
	ea.miniProgram(t, "mp", "wxapp1")
	ea.rsSecret = a.registerClient(t, map[string]any{"client_id": "rs", "scope": "introspect"})
	eb := &lifecycleEnv{wechatEnv: &wechatEnv{server: b, wx: wx}, rsSecret: ea.rsSecret}
	form := url.Values{"grant_type": {"client_credentials"}}
	_, _, old := b.postToken(t, "rs", ea.rsSecret, form)
	oldKid := kidOf(t, old["access_token"].(string))
	login := ea.loginTokens(t, "o-rot")

	deadline := time.Now().Add(10 * time.Second)
	for a.rotate(t) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("rotation never allowed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, _, fresh := a.postToken(t, "rs", ea.rsSecret, form)
	if kidOf(t, fresh["access_token"].(string)) == oldKid {
		t.Fatal("A does not sign with the new key after rotating")
	}
	if !eb.active(t, fresh["access_token"].(string)) {
		t.Fatal("B rejects a token A signed with the new key right after the rotation")
	}
	start := time.Now()
	for {
		_, _, body := b.postToken(t, "rs", ea.rsSecret, form)
		if kidOf(t, body["access_token"].(string)) != oldKid {
			t.Logf("process B signed with the new key %v after the rotation at A", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("process B still signs with the retired key after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !ea.active(t, old["access_token"].(string)) {
		t.Fatal("a token signed by the retired (still published) key is not active")
	}
	status, refreshed := eb.refresh(t, login["refresh_token"].(string))
	if status != 200 {
		t.Fatalf("refresh after rotation: %d %v", status, refreshed)
	}
	for _, k := range []string{"access_token", "id_token"} {
		if kidOf(t, refreshed[k].(string)) == oldKid {
			t.Errorf("refreshed %s signed with the retired key", k)
		}
	}
}

// TestKeysCLI drives `wxidp keys list|rotate` against the admin API.
func TestKeysCLI(t *testing.T) {
	t.Parallel()
	cfg := testConfig(migratedDB(t))
	fastKeys(&cfg)
	srv := startServer(t, cfg)
	run := func(args ...string) (string, error) {
		var out strings.Builder
		root := newRootCmd()
		root.SetOut(&out)
		root.SetArgs(append(args, "--endpoint", srv.admin, "--token", testAdminToken))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
	out, err := run("keys", "list")
	if err != nil || !strings.Contains(out, `"state": "active"`) || !strings.Contains(out, `"state": "next"`) || !strings.Contains(out, "created_at") {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	if _, err := run("keys", "rotate"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("an immediate rotation must be refused: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err = run("keys", "rotate")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys rotate never succeeded: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out, `"state": "retired"`) {
		t.Fatalf("after rotation the list shows no retired key:\n%s", out)
	}
}
