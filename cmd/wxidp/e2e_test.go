package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestClientCredentialsEndToEnd is what a third party does: an operator
// registers a client with the CLI, the client gets a token with
// golang.org/x/oauth2, and a resource server verifies it offline from our
// JWKS with go-jose and with go-oidc.
func TestClientCredentialsEndToEnd(t *testing.T) {
	t.Parallel()
	dsn := migratedDB(t)
	srv := startServer(t, testConfig(dsn))
	ctx := context.Background()

	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"clients", "create", "--endpoint", srv.admin, "--token", testAdminToken,
		"--id", "billing", "--name", "Billing service", "--scope", "read write",
		"--audience", "https://api.example.com", "--audience", "https://other.example.com"})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("clients create: %v", err)
	}
	var created map[string]any
	if err := json.Unmarshal(out.Bytes(), &created); err != nil {
		t.Fatalf("CLI output %q: %v", out.String(), err)
	}
	secret, _ := created["client_secret"].(string)
	if len(secret) < 43 {
		t.Fatalf("client_secret %q has less than 256 bits", secret)
	}

	cc := clientcredentials.Config{
		ClientID: "billing", ClientSecret: secret, TokenURL: srv.issuer + "/oauth2/token",
		Scopes: []string{"read"},
	}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	if tok.TokenType != "bearer" && tok.TokenType != "Bearer" {
		t.Errorf("token_type %q", tok.TokenType)
	}
	if d := time.Until(tok.Expiry); d < 14*time.Minute || d > 16*time.Minute {
		t.Errorf("expires in %v, want ~15m", d)
	}

	// go-jose v4 with the JWKS fetched over HTTP.
	jwks := fetchJWKS(t, srv.issuer)
	jws, err := jose.ParseSignedCompact(tok.AccessToken, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.ExtraHeaders["typ"] != "at+jwt" {
		t.Errorf("typ header %v, want at+jwt", h.ExtraHeaders["typ"])
	}
	keys := jwks.Key(h.KeyID)
	if h.KeyID == "" || len(keys) != 1 {
		t.Fatalf("kid %q not in JWKS", h.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("go-jose verify: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"iss", "sub", "aud", "client_id", "scope", "jti", "iat", "exp"} {
		if _, ok := claims[c]; !ok {
			t.Errorf("claim %s missing", c)
		}
	}
	if claims["iss"] != srv.issuer || claims["sub"] != "billing" || claims["client_id"] != "billing" || claims["scope"] != "read" {
		t.Errorf("claims %v", claims)
	}
	aud, _ := claims["aud"].([]any)
	if len(aud) != 2 || aud[0] != "https://api.example.com" {
		t.Errorf("aud %v, want the registered audience", claims["aud"])
	}

	// go-oidc, as a resource server would: remote key set + verifier.
	keySet := oidc.NewRemoteKeySet(ctx, srv.issuer+"/.well-known/jwks.json")
	verifier := oidc.NewVerifier(srv.issuer, keySet, &oidc.Config{ClientID: "https://api.example.com"})
	if _, err := verifier.Verify(ctx, tok.AccessToken); err != nil {
		t.Fatalf("go-oidc verify: %v", err)
	}

	// A requested audience narrows aud.
	cc.EndpointParams = map[string][]string{"audience": {"https://other.example.com"}}
	tok2, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2 := unverifiedClaims(t, tok2.AccessToken)
	if a, _ := c2["aud"].([]any); len(a) != 1 || a[0] != "https://other.example.com" {
		t.Errorf("requested audience: aud %v", c2["aud"])
	}
	if c2["jti"] == claims["jti"] {
		t.Error("two tokens share a jti")
	}

	// Discovery describes what is served.
	resp, err := http.Get(srv.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") {
		t.Errorf("discovery Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
	var disc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&disc); err != nil {
		t.Fatal(err)
	}
	if disc["issuer"] != srv.issuer || disc["jwks_uri"] != srv.issuer+"/.well-known/jwks.json" || disc["token_endpoint"] != srv.issuer+"/oauth2/token" {
		t.Errorf("discovery %v", disc)
	}
	if _, err := oidc.NewProvider(ctx, srv.issuer); err != nil {
		t.Errorf("go-oidc rejects our discovery document: %v", err)
	}

	// Secrets never reach the logs.
	if logs := srv.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, tok.AccessToken) {
		t.Error("a secret or token reached the log")
	}
}

// TestRestartKeepsSigningKey: tokens issued before a restart verify after it,
// against the same published key.
func TestRestartKeepsSigningKey(t *testing.T) {
	t.Parallel()
	dsn := migratedDB(t)
	first := startServer(t, testConfig(dsn))
	secret := first.registerClient(t, map[string]any{"client_id": "svc"})
	cc := clientcredentials.Config{ClientID: "svc", ClientSecret: secret, TokenURL: first.issuer + "/oauth2/token"}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before := fetchJWKS(t, first.issuer)
	first.stop()

	second := startServer(t, testConfig(dsn))
	after := fetchJWKS(t, second.issuer)
	if len(after.Keys) != 2 || strings.Join(kids(before), ",") != strings.Join(kids(after), ",") {
		t.Fatalf("key changed across restart: %v -> %v", kids(before), kids(after))
	}
	ks := oidc.NewRemoteKeySet(context.Background(), second.issuer+"/.well-known/jwks.json")
	if _, err := ks.VerifySignature(context.Background(), tok.AccessToken); err != nil {
		t.Fatalf("token from before the restart: %v", err)
	}
	if status, _, body := second.postToken(t, "svc", secret, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusOK {
		t.Fatalf("client registered before the restart: %d %v\n%s", status, body, second.logs.String())
	}
	cc.TokenURL = second.issuer + "/oauth2/token"
	cc.AuthStyle = oauth2.AuthStyleInHeader
	if _, err := cc.Token(context.Background()); err != nil {
		t.Fatalf("client registered before the restart: %v", err)
	}
}

func fetchJWKS(t testing.TB, issuer string) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(issuer + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") || resp.Header.Get("ETag") == "" {
		t.Fatalf("JWKS: %d, Cache-Control %q, ETag %q", resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("ETag"))
	}
	raw, _ := io.ReadAll(resp.Body)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatal("JWKS holds a private key")
		}
	}
	// A cached copy revalidates to 304.
	req, _ := http.NewRequest(http.MethodGet, issuer+"/.well-known/jwks.json", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	if status, _ := do(t, req); status != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", status)
	}
	return set
}

func unverifiedClaims(t testing.TB, token string) map[string]any {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func kids(s jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range s.Keys {
		out = append(out, k.KeyID)
	}
	slices.Sort(out)
	return out
}

// TestMetrics: the admin listener serves Prometheus metrics, labelled by
// route pattern, behind the admin token.
func TestMetrics(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	srv.postToken(t, "nobody", "x", url.Values{"grant_type": {"client_credentials"}})
	if status, _ := srv.adminRaw(t, http.MethodGet, "/metrics", "", "", nil); status != http.StatusUnauthorized {
		t.Fatalf("metrics without the admin token: %d", status)
	}
	status, out := srv.adminRaw(t, http.MethodGet, "/metrics", testAdminToken, "", nil)
	if status != 200 || !strings.Contains(string(out), `wxidp_http_requests_total{code="4xx",listener="public",method="POST",route="/oauth2/token"} 1`) ||
		!strings.Contains(string(out), "wxidp_http_request_duration_seconds_bucket") || !strings.Contains(string(out), "go_goroutines") {
		t.Fatalf("metrics: %d\n%s", status, out)
	}
}
