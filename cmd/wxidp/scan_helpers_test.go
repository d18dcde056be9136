package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// scanEnv is a server with a mini-program client ("mp") and a website
// client ("web") that logs in by scan.
type scanEnv struct {
	*wechatEnv
	web   *oauth2.Config
	clock *testClock
	appID string
}

const (
	scanRedirect = "https://rp.example.com/cb"
	scanBye      = "https://rp.example.com/bye"
)

// testClock is a settable clock for the server (cfg.now).
type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

func newScanEnv(t *testing.T, web map[string]any, mutate ...func(*serveConfig)) *scanEnv {
	t.Helper()
	clock := &testClock{}
	mutate = append(mutate, func(c *serveConfig) { c.now = clock.now })
	e := &scanEnv{wechatEnv: newWeChatEnv(t, mutate...), clock: clock, appID: "wxscanapp"}
	e.miniProgram(t, "mp", e.appID)
	reg := map[string]any{
		"client_id": "web", "client_name": "Example Web", "client_secret": strings.Repeat("w", 40),
		"grant_types": []string{"authorization_code", "refresh_token"}, "scope": "openid offline_access profile",
		"redirect_uris": []string{scanRedirect}, "post_logout_redirect_uris": []string{scanBye},
	}
	for k, v := range web {
		reg[k] = v
	}
	if status, body := e.adminJSON(t, "POST", "/admin/clients", testAdminToken, reg); status != http.StatusCreated {
		t.Fatalf("register web client: %d %v", status, body)
	}
	e.web = &oauth2.Config{
		ClientID: "web", ClientSecret: strings.Repeat("w", 40), RedirectURL: scanRedirect,
		Scopes:   []string{"openid", "offline_access"},
		Endpoint: oauth2.Endpoint{AuthURL: e.issuer + "/oauth2/auth", TokenURL: e.issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
	}
	return e
}

// user logs a mini-program user in with the WeChat-code grant and returns
// its access token and sub.
func (e *scanEnv) user(t *testing.T, openID string) (string, string) {
	t.Helper()
	status, _, body := e.login(t, "mp", e.wx.Login(e.appID, openID, ""), "scope", "openid")
	if status != http.StatusOK {
		t.Fatalf("mini-program login: %d %v", status, body)
	}
	tok := body["access_token"].(string)
	return tok, unverifiedClaims(t, tok)["sub"].(string)
}

// mini calls the ticket API as the mini-program.
func (e *scanEnv) mini(t *testing.T, method, ticket, step, token string) (int, map[string]any) {
	t.Helper()
	path := e.issuer + "/login/tickets/" + ticket
	if step != "" {
		path += "/" + step
	}
	req, err := http.NewRequest(method, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return decodeDo(t, req)
}

// browser is an HTTP client with cookies that does not follow redirects.
type browser struct {
	t      *testing.T
	c      *http.Client
	lang   string
	origin string
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	if b.lang != "" {
		req.Header.Set("Accept-Language", b.lang)
	}
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp, string(body)
}

func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// authRequest is one authorization request of the website.
type authRequest struct {
	url, state, nonce, verifier string
}

func randomValue(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (e *scanEnv) authRequest(t *testing.T, extra ...oauth2.AuthCodeOption) authRequest {
	a := authRequest{state: randomValue(t), nonce: randomValue(t), verifier: oauth2.GenerateVerifier()}
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(a.verifier), oidc.Nonce(a.nonce)}, extra...)
	a.url = e.web.AuthCodeURL(a.state, opts...)
	return a
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// startLogin sends the browser to the authorization endpoint and on to the
// login page; it returns the ticket and the page's CSRF token.
func (e *scanEnv) startLogin(t *testing.T, b *browser, a authRequest) (ticket, csrf string) {
	t.Helper()
	resp, body := b.get(a.url)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?ticket=") {
		t.Fatalf("authorize: %d Location %q\n%s", resp.StatusCode, loc, body)
	}
	ticket = strings.TrimPrefix(loc, "/login?ticket=")
	resp, body = b.get(e.issuer + loc)
	m := csrfField.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, body)
	}
	return ticket, m[1]
}

// approve scans and approves ticket as the mini-program user.
func (e *scanEnv) approve(t *testing.T, ticket, token string) {
	t.Helper()
	for _, step := range []string{"scan", "approve"} {
		if status, body := e.mini(t, http.MethodPost, ticket, step, token); status != http.StatusOK {
			t.Fatalf("%s: %d %v", step, status, body)
		}
	}
}

// complete submits the page's completion form and returns the redirect.
func (e *scanEnv) complete(t *testing.T, b *browser, ticket, csrf string) (*http.Response, string) {
	t.Helper()
	return b.post(e.issuer+"/login/complete", url.Values{"ticket": {ticket}, "csrf": {csrf}})
}

// scannedCode runs a whole scan login in a fresh browser, approved by the
// mini-program user of userTok, and returns its request and its code.
func (e *scanEnv) scannedCode(t *testing.T, userTok string, extra ...oauth2.AuthCodeOption) (authRequest, string) {
	t.Helper()
	b := newBrowser(t)
	a := e.authRequest(t, extra...)
	ticket, csrf := e.startLogin(t, b, a)
	e.approve(t, ticket, userTok)
	resp, body := e.complete(t, b, ticket, csrf)
	return a, codeFrom(t, resp, body, a)
}

// codeFrom checks a redirect to the website and returns its code.
func codeFrom(t *testing.T, resp *http.Response, body string, a authRequest) string {
	t.Helper()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || err != nil ||
		!strings.HasPrefix(loc.String(), scanRedirect+"?") {
		t.Fatalf("want a redirect to the website, got %d %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if loc.Query().Get("state") != a.state || loc.Query().Get("code") == "" {
		t.Fatalf("redirect %q: want code and state %q", loc, a.state)
	}
	return loc.Query().Get("code")
}

// errorFrom checks a redirect to the website carrying an error.
func errorFrom(t *testing.T, resp *http.Response, a authRequest) string {
	t.Helper()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), scanRedirect+"?") || loc.Query().Get("code") != "" {
		t.Fatalf("want an error redirect to the website, got %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if loc.Query().Get("state") != a.state {
		t.Errorf("error redirect %q lacks state %q", loc, a.state)
	}
	return loc.Query().Get("error")
}

// exchange trades the code at the token endpoint as the website would,
// and verifies the ID token with go-oidc.
func (e *scanEnv) exchange(t *testing.T, code string, a authRequest) (*oauth2.Token, *oidc.IDToken, map[string]any) {
	t.Helper()
	ctx := context.Background()
	tok, err := e.web.Exchange(ctx, code, oauth2.VerifierOption(a.verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	op, err := oidc.NewProvider(ctx, e.issuer)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := op.Verifier(&oidc.Config{ClientID: "web"}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("verify ID token: %v", err)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Nonce != a.nonce {
		t.Errorf("nonce %q, want %q", idt.Nonce, a.nonce)
	}
	return tok, idt, claims
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
