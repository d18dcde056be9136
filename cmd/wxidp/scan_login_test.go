package main

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/wxidp/wxidp/internal/browsertest"
)

// TestScanLogin: the whole scan-to-login over HTTP, as the website (x/oauth2
// and go-oidc), the browser (cookies, the page's forms) and the
// mini-program (its bearer token) each do it; then a second authorization
// rides the browser session, prompt=login and max_age=0 ask for a scan
// again, and logout ends the session.
func TestScanLogin(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, nil)
	userTok, sub := e.user(t, "o-alice")
	b := newBrowser(t)

	// Discovery names the endpoints.
	_, disc := decodeDo(t, mustRequest(t, http.MethodGet, e.issuer+"/.well-known/openid-configuration"))
	if disc["authorization_endpoint"] != e.issuer+"/oauth2/auth" || disc["end_session_endpoint"] != e.issuer+"/oauth2/logout" ||
		jsonString(disc["code_challenge_methods_supported"]) != `["S256"]` || jsonString(disc["response_types_supported"]) != `["code"]` ||
		!strings.Contains(jsonString(disc["grant_types_supported"]), "authorization_code") {
		t.Fatalf("discovery: %v", disc)
	}

	a := e.authRequest(t)
	ticket, csrf := e.startLogin(t, b, a)
	status, view := e.mini(t, http.MethodGet, ticket, "", userTok)
	if status != http.StatusOK || view["client_name"] != "Example Web" || view["state"] != "waiting" ||
		jsonString(view["scopes"]) != `["openid","offline_access"]` || view["source_ip"] != "127.0.0.1" {
		t.Fatalf("ticket as the mini-program sees it: %d %v", status, view)
	}
	if resp, body := b.get(e.issuer + "/login/status?ticket=" + ticket); resp.StatusCode != 200 || !strings.Contains(body, `"waiting"`) {
		t.Fatalf("status: %d %s", resp.StatusCode, body)
	}
	// This client has no mini-program: the picture is a plain QR code of
	// our /login/scan page, which tells a phone camera what to do.
	resp, png := b.get(e.issuer + "/login/qr?ticket=" + ticket)
	content, err := browsertest.DecodeQR([]byte(png))
	if resp.StatusCode != http.StatusOK || err != nil || content != e.issuer+"/login/scan?ticket="+ticket {
		t.Fatalf("plain QR code: %d %q %v", resp.StatusCode, content, err)
	}
	if resp, body := newBrowser(t).get(content); resp.StatusCode != http.StatusOK || !strings.Contains(body, "mini-program") {
		t.Errorf("scan page: %d %s", resp.StatusCode, body)
	}
	if resp, _ := newBrowser(t).get(e.issuer + "/login/qr?ticket=" + ticket); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another browser's picture: %d, want 404", resp.StatusCode)
	}
	e.approve(t, ticket, userTok)
	if resp, body := b.get(e.issuer + "/login/status?ticket=" + ticket); !strings.Contains(body, `"approved"`) {
		t.Fatalf("status after approval: %d %s", resp.StatusCode, body)
	}
	resp, body := e.complete(t, b, ticket, csrf)
	code := codeFrom(t, resp, body, a)
	tok, idt, claims := e.exchange(t, code, a)
	if idt.Subject != sub {
		t.Fatalf("website sub %q, mini-program sub %q", idt.Subject, sub)
	}
	if jsonString(claims["amr"]) != `["wechat_scan"]` || claims["auth_time"] == nil {
		t.Errorf("ID token claims: %v", claims)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token with offline_access")
	}
	// The refresh token rotates.
	fresh, err := e.web.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil || fresh.RefreshToken == "" || fresh.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %v (rotated: %v)", err, fresh != nil && fresh.RefreshToken != tok.RefreshToken)
	}
	// The session cookie's flags.
	for _, c := range resp.Cookies() {
		if c.Name == "wxidp_session" && (!c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/") {
			t.Errorf("session cookie flags: %+v", c)
		}
	}

	// A second authorization needs no scan: straight back with a code.
	a2 := e.authRequest(t)
	resp, body = b.get(a2.url)
	_, idt2, _ := e.exchange(t, codeFrom(t, resp, body, a2), a2)
	if idt2.Subject != sub {
		t.Fatalf("second login sub %q, want %q", idt2.Subject, sub)
	}
	// prompt=none too; prompt=login and max_age=0 ask for a scan.
	a3 := e.authRequest(t, oauth2.SetAuthURLParam("prompt", "none"))
	resp, body = b.get(a3.url)
	codeFrom(t, resp, body, a3)
	for _, opt := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0")} {
		a4 := e.authRequest(t, opt)
		ticket, csrf := e.startLogin(t, b, a4)
		e.approve(t, ticket, userTok)
		resp, body := e.complete(t, b, ticket, csrf)
		_, _, c4 := e.exchange(t, codeFrom(t, resp, body, a4), a4)
		if c4["auth_time"].(float64) < float64(time.Now().Add(-time.Minute).Unix()) {
			t.Errorf("auth_time %v is not the new scan's", c4["auth_time"])
		}
	}

	// RP-initiated logout with the ID token as hint, back to the website.
	raw, _ := tok.Extra("id_token").(string)
	q := url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {scanBye}, "state": {"bye-state"}}
	resp, body = b.get(e.issuer + "/oauth2/logout?" + q.Encode())
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != scanBye+"?state=bye-state" {
		t.Fatalf("logout: %d %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	a5 := e.authRequest(t, oauth2.SetAuthURLParam("prompt", "none"))
	resp, _ = b.get(a5.url)
	if got := errorFrom(t, resp, a5); got != "login_required" {
		t.Fatalf("after logout, prompt=none: error %q, want login_required", got)
	}
}

// TestScanLoginLanguages: the page speaks Chinese to a browser preferring
// it, English otherwise, and carries a CSP without inline script.
func TestScanLoginLanguages(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, nil)
	for lang, want := range map[string]string{"zh-CN,zh;q=0.9,en;q=0.8": "微信扫码登录", "en-US,en;q=0.9": "Log in with WeChat", "fr-FR": "Log in with WeChat", "": "Log in with WeChat"} {
		b := newBrowser(t)
		b.lang = lang
		a := e.authRequest(t)
		resp, _ := b.get(a.url)
		resp, body := b.get(e.issuer + resp.Header.Get("Location"))
		if !strings.Contains(body, want) {
			t.Errorf("Accept-Language %q: page lacks %q", lang, want)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(body, "<script>") {
			t.Errorf("CSP %q or inline script", csp)
		}
		if !slices.ContainsFunc(resp.Header.Values("Cache-Control"), func(v string) bool { return strings.Contains(v, "no-store") }) {
			t.Errorf("login page cacheable: %v", resp.Header)
		}
	}
}
