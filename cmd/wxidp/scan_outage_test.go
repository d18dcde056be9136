package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// TestScanLoginOutages: while the database is down or hung, every step of
// scan-to-login answers 503 with Retry-After within the deadline (never
// "unknown client" or "no such ticket"; the authorization endpoint may
// instead redirect temporarily_unavailable to a client it knows), and an approved ticket whose
// completion met the outage completes once the database is back. While
// WeChat is down, a client's mini-program code is 503 too.
func TestScanLoginOutages(t *testing.T) {
	t.Parallel()
	const dbTimeout = 500 * time.Millisecond
	var proxy *postgrestest.Proxy
	e := newScanEnv(t, map[string]any{"wechat_appid": "wxscanapp", "wechat_app_secret": "secret-of-wxscanapp"},
		func(c *serveConfig) {
			proxy, c.DatabaseURL = postgrestest.NewProxy(t, c.DatabaseURL)
			c.DatabaseTimeout = dbTimeout
		})
	alice, _ := e.user(t, "o-alice")
	b := newBrowser(t)
	a := e.authRequest(t)
	ticket, csrf := e.startLogin(t, b, a)
	if resp, body := b.get(e.issuer + "/login/qr?ticket=" + ticket); resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") {
		t.Fatalf("mini-program code: %d %s", resp.StatusCode, body)
	}
	e.approve(t, ticket, alice)

	steps := map[string]func() *http.Response{
		"authorize": func() *http.Response { r, _ := b.get(e.authRequest(t).url); return r },
		"page":      func() *http.Response { r, _ := b.get(e.issuer + "/login?ticket=" + ticket); return r },
		"status":    func() *http.Response { r, _ := b.get(e.issuer + "/login/status?ticket=" + ticket); return r },
		"complete":  func() *http.Response { r, _ := e.complete(t, b, ticket, csrf); return r },
		"renew": func() *http.Response {
			r, _ := b.post(e.issuer+"/login/renew", url.Values{"ticket": {ticket}, "csrf": {csrf}})
			return r
		},
		"ticket api": func() *http.Response {
			req := mustRequest(t, http.MethodGet, e.issuer+"/login/tickets/"+ticket)
			req.Header.Set("Authorization", "Bearer "+alice)
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			return r
		},
	}
	for _, outage := range []struct {
		name  string
		start func()
	}{{"down", proxy.Down}, {"hung", proxy.Hang}} {
		outage.start()
		for name, step := range steps {
			start := time.Now()
			resp := step()
			// Once the client is known (the client cache may know it while
			// the database is away), the authorization endpoint answers the
			// website itself, as RFC 6749 §4.1.2.1 says.
			if loc, _ := url.Parse(resp.Header.Get("Location")); name == "authorize" && resp.StatusCode == http.StatusSeeOther &&
				strings.HasPrefix(loc.String(), scanRedirect+"?") && loc.Query().Get("error") == "temporarily_unavailable" {
				continue
			}
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Errorf("%s: %s: %d Retry-After %q, want 503 with Retry-After", outage.name, name, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			if took := time.Since(start); took > 4*dbTimeout+2*time.Second {
				t.Errorf("%s: %s took %v", outage.name, name, took)
			}
		}
		proxy.Up()
	}
	resp, body := e.complete(t, b, ticket, csrf)
	e.exchange(t, codeFrom(t, resp, body, a), a)

	// WeChat down: the page's picture is 503, not a broken 500.
	e.wx.Close()
	b = newBrowser(t) // logged in already, the first would get no page
	a = e.authRequest(t)
	ticket, _ = e.startLogin(t, b, a)
	if resp, _ := b.get(e.issuer + "/login/qr?ticket=" + ticket); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("picture while WeChat is down: %d", resp.StatusCode)
	}
}
