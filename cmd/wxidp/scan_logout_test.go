package main

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"
)

// loggedIn runs one whole scan login in b and returns the website's token.
func (e *scanEnv) loggedIn(t *testing.T, b *browser, userTok string) *oauth2.Token {
	t.Helper()
	a := e.authRequest(t)
	ticket, csrf := e.startLogin(t, b, a)
	e.approve(t, ticket, userTok)
	resp, body := e.complete(t, b, ticket, csrf)
	tok, _, _ := e.exchange(t, codeFrom(t, resp, body, a), a)
	return tok
}

// TestScanLoginWebsiteTokenRefused: a website's access token (from the
// authorization code grant) names a user too, but only the mini-program's
// tokens may scan and approve: else any relying party could log in as its
// users at every other website.
func TestScanLoginWebsiteTokenRefused(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, nil)
	alice, _ := e.user(t, "o-alice")
	webTok := e.loggedIn(t, newBrowser(t), alice).AccessToken
	ticket, _ := e.startLogin(t, newBrowser(t), e.authRequest(t))
	for _, step := range []string{"", "scan", "approve"} {
		method := http.MethodPost
		if step == "" {
			method = http.MethodGet
		}
		if status, body := e.mini(t, method, ticket, step, webTok); status != http.StatusForbidden {
			t.Errorf("%s with a website's token: %d %v, want 403", step, status, body)
		}
	}
	// A client's own token is refused the same way.
	status, _, cc := e.postToken(t, "web", strings.Repeat("w", 40), url.Values{"grant_type": {"client_credentials"}})
	if status == http.StatusOK {
		if status, _ := e.mini(t, http.MethodPost, ticket, "scan", cc["access_token"].(string)); status != http.StatusForbidden {
			t.Errorf("scan with a client_credentials token: %d", status)
		}
	}
	// HEAD at the authorization endpoint changes nothing.
	if resp, _ := newBrowser(t).do(mustRequest(t, http.MethodHead, e.authRequest(t).url)); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("HEAD /oauth2/auth: %d, want 405", resp.StatusCode)
	}
	if n := e.count(t, "login_tickets"); n != 2 {
		t.Errorf("%d tickets, want 2", n)
	}
	// Ticket values never reach the logs (the access log names the route).
	if strings.Contains(e.logs.String(), ticket) {
		t.Error("a login ticket was logged")
	}
}

var logoutForm = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestScanLogout: RP-initiated logout's refusals (an unregistered
// post_logout_redirect_uri, a foreign or forged id_token_hint) are pages
// that change nothing; without a hint the user confirms with a
// CSRF-protected form.
func TestScanLogout(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, nil)
	alice, _ := e.user(t, "o-alice")
	b := newBrowser(t)
	tok := e.loggedIn(t, b, alice)
	hint, _ := tok.Extra("id_token").(string)
	stillIn := func(when string) {
		t.Helper()
		a := e.authRequest(t, oauth2.SetAuthURLParam("prompt", "none"))
		resp, body := b.get(a.url)
		codeFrom(t, resp, body, a)
	}
	for name, q := range map[string]url.Values{
		"unregistered redirect": {"id_token_hint": {hint}, "post_logout_redirect_uri": {"https://evil.example.com/"}},
		"redirect, no client":   {"post_logout_redirect_uri": {scanBye}},
		"forged hint":           {"id_token_hint": {"eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}},
		"access token as hint":  {"id_token_hint": {tok.AccessToken}},
		"client not in hint":    {"id_token_hint": {hint}, "client_id": {"mp"}},
	} {
		resp, body := b.get(e.issuer + "/oauth2/logout?" + q.Encode())
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, "<html") {
			t.Errorf("%s: %d %q, want an error page", name, resp.StatusCode, resp.Header.Get("Location"))
		}
		stillIn(name)
	}
	// No hint: a confirmation page; a POST without its token asks again.
	resp, body := b.get(e.issuer + "/oauth2/logout")
	m := logoutForm.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil || !strings.Contains(body, `action="/oauth2/logout"`) {
		t.Fatalf("confirmation page: %d\n%s", resp.StatusCode, body)
	}
	if resp, body := b.post(e.issuer+"/oauth2/logout", url.Values{"csrf": {"forged"}}); resp.StatusCode != http.StatusOK || !strings.Contains(body, "confirm-logout") {
		t.Errorf("logout POST with a forged token: %d, want the confirmation again", resp.StatusCode)
	}
	stillIn("forged confirmation")
	if resp, body := b.post(e.issuer+"/oauth2/logout", url.Values{"csrf": {m[1]}}); resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-kind="logged-out"`) {
		t.Fatalf("confirmed logout: %d\n%s", resp.StatusCode, body)
	}
	a := e.authRequest(t, oauth2.SetAuthURLParam("prompt", "none"))
	resp, _ = b.get(a.url)
	if got := errorFrom(t, resp, a); got != "login_required" {
		t.Fatalf("after logout: %q", got)
	}
}

// TestScanLoginCodeRace: concurrent exchanges of one authorization code
// give tokens at most once, and the tokens issued are revoked as for a
// replay.
func TestScanLoginCodeRace(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, nil)
	alice, _ := e.user(t, "o-alice")
	a, code := e.scannedCode(t, alice)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {scanRedirect}, "code_verifier": {a.verifier}}
	const n = 6
	var wg sync.WaitGroup
	results := make(chan map[string]any, n)
	for range n {
		wg.Go(func() {
			status, _, body := e.postToken(t, "web", strings.Repeat("w", 40), form)
			if status != http.StatusOK && body["error"] != "invalid_grant" {
				t.Errorf("a concurrent exchange: %d %v", status, body)
			}
			results <- body
		})
	}
	wg.Wait()
	close(results)
	var tokens []string
	for body := range results {
		if at, ok := body["access_token"].(string); ok {
			tokens = append(tokens, at)
		}
	}
	if len(tokens) > 1 {
		t.Fatalf("one code gave %d token sets", len(tokens))
	}
	for _, at := range tokens {
		req := mustRequest(t, http.MethodGet, e.issuer+"/userinfo")
		req.Header.Set("Authorization", "Bearer "+at)
		if status, _ := decodeDo(t, req); status != http.StatusUnauthorized {
			t.Errorf("the token of a code exchanged concurrently still works: %d", status)
		}
	}
}

// TestScanLoginNativeClientAlwaysAsks: a browser login answers a
// confidential website or a public one on https at once, but a public
// client on a loopback redirect (a native app, whose identity nothing
// proves) gets a new scan every time.
func TestScanLoginNativeClientAlwaysAsks(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, nil)
	alice, _ := e.user(t, "o-alice")
	const native = "http://127.0.0.1:8765/cb"
	if status, body := e.adminJSON(t, "POST", "/admin/clients", testAdminToken, map[string]any{
		"client_id": "native", "token_endpoint_auth_method": "none", "scope": "openid",
		"grant_types": []string{"authorization_code"}, "redirect_uris": []string{native},
	}); status != http.StatusCreated {
		t.Fatalf("register native client: %d %v", status, body)
	}
	b := newBrowser(t)
	e.loggedIn(t, b, alice) // logged in here through the website
	conf := *e.web
	conf.ClientID, conf.ClientSecret, conf.RedirectURL, conf.Scopes = "native", "", native, []string{"openid"}
	u := conf.AuthCodeURL("native-state-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	resp, body := b.get(u)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?ticket=") {
		t.Fatalf("native client answered from the session: %d %q\n%s", resp.StatusCode, loc, body)
	}
	// prompt=none cannot be answered for it either.
	resp, _ = b.get(u + "&prompt=none")
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), native+"?") || loc.Query().Get("error") != "login_required" ||
		loc.Query().Get("state") != "native-state-1" {
		t.Errorf("native client, prompt=none: %d %q, want login_required", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestScanLoginTicketLimit: each login page stores a ticket, so a source
// gets only so many: past its burst the page answers 429 with Retry-After
// and stores nothing (renewing a code counts too).
func TestScanLoginTicketLimit(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, nil, func(c *serveConfig) {
		c.limitsConfig.RateLoginTickets, c.limitsConfig.RateLoginTicketsBurst = 0.01, 3
	})
	b := newBrowser(t)
	var ticket, csrf string
	for range 3 {
		ticket, csrf = e.startLogin(t, b, e.authRequest(t))
	}
	resp, body := b.get(e.authRequest(t).url)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "<html") {
		t.Fatalf("fourth login page: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp, _ := b.post(e.issuer+"/login/renew", url.Values{"ticket": {ticket}, "csrf": {csrf}}); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("renew past the limit: %d, want 429", resp.StatusCode)
	}
	if n := e.count(t, "login_tickets"); n != 3 {
		t.Errorf("%d tickets stored, want 3", n)
	}
}
