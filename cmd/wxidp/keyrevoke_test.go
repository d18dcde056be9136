package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// TestKeyRevocationEndToEnd: the active signing key leaked. An operator
// revokes it through the admin API; from then on the server neither
// publishes it nor signs or accepts tokens with it, and third-party
// verifiers accept the tokens the new active key signs.
func TestKeyRevocationEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	login := e.loginTokens(t, "o-leak")
	old := login["access_token"].(string)
	revoked := kidOf(t, old)

	// A resource server with go-oidc that fetched the JWKS before the
	// revocation.
	verifier := oidc.NewVerifier(e.issuer, oidc.NewRemoteKeySet(ctx, e.issuer+"/.well-known/jwks.json"),
		&oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: []string{oidc.RS256}})
	if _, err := verifier.Verify(ctx, old); err != nil {
		t.Fatalf("go-oidc refuses a token before the revocation: %v", err)
	}
	if !e.active(t, old) {
		t.Fatal("a fresh token introspects inactive before the revocation")
	}
	if status, _ := e.userinfo(t, old); status != http.StatusOK {
		t.Fatalf("userinfo before the revocation: %d", status)
	}

	status, body := e.adminJSON(t, http.MethodDelete, "/admin/keys/"+url.PathEscape(revoked), testAdminToken, nil)
	if status != http.StatusOK {
		t.Fatalf("DELETE /admin/keys/%s: %d %v", revoked, status, body)
	}
	checkKeyList(t, body, revoked)

	jwks := fetchJWKS(t, e.issuer)
	if len(jwks.Key(revoked)) != 0 {
		t.Errorf("JWKS %v still lists the revoked kid %s", kids(jwks), revoked)
	}
	if e.active(t, old) {
		t.Error("a token signed by the revoked key introspects active")
	}
	if status, _ := e.userinfo(t, old); status != http.StatusUnauthorized {
		t.Errorf("userinfo with a token signed by the revoked key: %d, want 401", status)
	}

	// New tokens: signed by another key, verified by go-jose against the
	// JWKS as it is now and by the go-oidc verifier with its earlier cache.
	fresh := e.loginTokens(t, "o-after")["access_token"].(string)
	kid := kidOf(t, fresh)
	if kid == revoked {
		t.Fatalf("a token issued after the revocation is signed by the revoked key %s", kid)
	}
	checkSignedBy(t, fresh, jwks)
	if _, err := verifier.Verify(ctx, fresh); err != nil {
		t.Errorf("go-oidc refuses a token signed after the revocation: %v", err)
	}
	if !e.active(t, fresh) {
		t.Error("a token signed after the revocation introspects inactive")
	}
	if status, _ := e.userinfo(t, fresh); status != http.StatusOK {
		t.Errorf("userinfo with a token signed after the revocation: %d", status)
	}
	// Refresh tokens are HMAC, not signed by the key: they keep working,
	// and the access token they bring is signed by the new key.
	status, refreshed := e.refresh(t, login["refresh_token"].(string))
	if status != http.StatusOK {
		t.Fatalf("refresh after the revocation: %d %v", status, refreshed)
	}
	checkSignedBy(t, refreshed["access_token"].(string), jwks)

	checkRevocationLogged(t, e.logs.String(), revoked, "admin-api")

	// Revoked already, or never existed: 404.
	for _, k := range []string{revoked, "no-such-kid"} {
		status, body := e.adminJSON(t, http.MethodDelete, "/admin/keys/"+k, testAdminToken, nil)
		if status != http.StatusNotFound || body["error"] != "not_found" {
			t.Errorf("DELETE /admin/keys/%s: %d %v, want 404 not_found", k, status, body)
		}
	}
	if status, _ := e.adminJSON(t, http.MethodDelete, "/admin/keys/"+kid, "", nil); status != http.StatusUnauthorized {
		t.Errorf("DELETE /admin/keys without the admin token: %d, want 401", status)
	}
}

// TestKeyRevokeCLI: `wxidp keys revoke KID` revokes through the admin API,
// prints the key list, and is logged as the CLI's doing.
func TestKeyRevokeCLI(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	keysCLI := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		// The flags go right after the subcommand, before any "--".
		root.SetArgs(append([]string{"keys", args[0], "--endpoint", srv.admin, "--token", testAdminToken}, args[1:]...))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
	before := fetchJWKS(t, srv.issuer)
	_, listed := srv.adminJSON(t, http.MethodGet, "/admin/keys", testAdminToken, nil)
	active := ""
	for _, k := range listed["keys"].([]any) {
		if k := k.(map[string]any); k["state"] == "active" {
			active = k["kid"].(string)
		}
	}
	if active == "" || len(before.Key(active)) != 1 {
		t.Fatalf("no published active key in %v", listed)
	}

	// "--": a kid is base64url and may begin with '-' (1 in 64), which a
	// bare argument would make a flag.
	out, err := keysCLI("revoke", "--", active)
	if err != nil {
		t.Fatalf("keys revoke: %v", err)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(out), &body); err != nil {
		t.Fatalf("keys revoke printed %q: %v", out, err)
	}
	checkKeyList(t, body, active)
	if after := fetchJWKS(t, srv.issuer); len(after.Key(active)) != 0 {
		t.Errorf("JWKS %v still lists the revoked kid %s", kids(after), active)
	}
	checkRevocationLogged(t, srv.logs.String(), active, "cli")

	if _, err := keysCLI("revoke", "no-such-kid"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("keys revoke of an unknown kid: %v, want a 404 error", err)
	}
}

// checkKeyList checks an admin key list: revoked is gone, and one key is
// active and one next.
func checkKeyList(t *testing.T, body map[string]any, revoked string) {
	t.Helper()
	list, _ := body["keys"].([]any)
	states := map[string]int{}
	for _, k := range list {
		k, _ := k.(map[string]any)
		if k["kid"] == revoked {
			t.Errorf("key list still holds the revoked key: %v", k)
		}
		states[k["state"].(string)]++
	}
	if states["active"] != 1 || states["next"] != 1 {
		t.Errorf("key list after revocation %v: want one active and one next key", list)
	}
}

// checkSignedBy verifies token with go-jose against the key its kid names
// in jwks.
func checkSignedBy(t *testing.T, token string, jwks jose.JSONWebKeySet) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := jwks.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("kid %s is not in the JWKS %v", kid, kids(jwks))
	}
	if _, err := jws.Verify(keys[0]); err != nil {
		t.Errorf("go-jose: %v", err)
	}
}

// checkRevocationLogged finds the one log line recording the revocation of
// kid by actor, with the request ID that ties it to the access log.
func checkRevocationLogged(t *testing.T, logs, kid, actor string) {
	t.Helper()
	found := 0
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "signing key revoked" {
			continue
		}
		found++
		if rec["level"] != "INFO" || rec["kid"] != kid || rec["actor"] != actor || rec["request_id"] == "" || rec["request_id"] == nil {
			t.Errorf("revocation log line %s, want INFO with kid %s, actor %s and a request_id", line, kid, actor)
		}
	}
	if found != 1 {
		t.Errorf("%d revocation log lines, want 1", found)
	}
}
