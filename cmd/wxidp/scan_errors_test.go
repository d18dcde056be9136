package main

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestScanLoginBadRequests: a request that cannot be trusted with a
// redirect (unknown client, unregistered redirect_uri) is an error page,
// never a redirect; anything else wrong goes back to the website as an
// RFC 6749 error with its state. No ticket is created for any of them.
func TestScanLoginBadRequests(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, nil)
	b := newBrowser(t)
	good := e.authRequest(t)
	parsed, _ := url.Parse(good.url)
	with := func(k, v string) string {
		q := parsed.Query()
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		u := *parsed
		u.RawQuery = q.Encode()
		return u.String()
	}
	for name, u := range map[string]string{
		"unknown client":        with("client_id", "nobody"),
		"no client":             with("client_id", ""),
		"unregistered redirect": with("redirect_uri", "https://evil.example.com/cb"),
		"redirect differs":      with("redirect_uri", scanRedirect+"/"),
		"no redirect":           with("redirect_uri", ""),
		"mini-program client":   with("client_id", "mp"),
		"repeated parameter":    good.url + "&client_id=web",
		"oversized":             with("state", strings.Repeat("s", 70<<10)),
	} {
		resp, body := b.get(u)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d Location %q, want an error page", name, resp.StatusCode, resp.Header.Get("Location"))
		}
		if name != "oversized" && !strings.Contains(body, "<html") {
			t.Errorf("%s: not a page: %.200s", name, body)
		}
	}
	for name, c := range map[string]struct{ url, want string }{
		"plain PKCE":        {with("code_challenge_method", "plain"), "invalid_request"},
		"bad challenge":     {with("code_challenge", "short"), "invalid_request"},
		"unknown scope":     {with("scope", "openid admin"), "invalid_scope"},
		"token response":    {with("response_type", "token"), "unsupported_response_type"},
		"form_post":         {with("response_mode", "form_post"), "unsupported_response_mode"},
		"unknown prompt":    {with("prompt", "sometimes"), "invalid_request"},
		"prompt none+login": {with("prompt", "none login"), "invalid_request"},
		"bad max_age":       {with("max_age", "-1"), "invalid_request"},
		"no session, none":  {with("prompt", "none"), "login_required"},
	} {
		resp, body := b.get(c.url)
		if resp.Header.Get("Location") == "" {
			t.Errorf("%s: %d, no redirect: %.300s", name, resp.StatusCode, body)
			continue
		}
		if got := errorFrom(t, resp, good); got != c.want {
			t.Errorf("%s: error %q, want %q (%s)", name, got, c.want, body)
		}
	}
	if n := e.count(t, "login_tickets"); n != 0 {
		t.Errorf("%d tickets created by refused requests", n)
	}
}

// TestScanLoginPKCE: a public website client must use PKCE; the code only
// goes with its verifier; a replayed code is refused and revokes the
// tokens issued with it.
func TestScanLoginPKCE(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, map[string]any{"client_secret": nil, "token_endpoint_auth_method": "none"})
	e.web.ClientSecret = ""
	e.web.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	userTok, _ := e.user(t, "o-bob")
	b := newBrowser(t)

	noPKCE := e.web.AuthCodeURL("state-without-pkce")
	resp, _ := b.get(noPKCE)
	if got := errorFrom(t, resp, authRequest{state: "state-without-pkce"}); got != "invalid_request" {
		t.Fatalf("public client without PKCE: %q", got)
	}

	login := func() (string, authRequest) {
		a, code := e.scannedCode(t, userTok) // a fresh browser, so every login scans
		return code, a
	}
	ctx := context.Background()
	for _, c := range []struct {
		name string
		opts []oauth2.AuthCodeOption
	}{
		{"no verifier", nil},
		{"wrong verifier", []oauth2.AuthCodeOption{oauth2.VerifierOption(oauth2.GenerateVerifier())}},
	} {
		code, _ := login()
		_, err := e.web.Exchange(ctx, code, c.opts...)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Errorf("%s: %v, want invalid_grant", c.name, err)
		}
	}
	// The replay check uses a fresh code.
	code, a := login()
	tok, _, _ := e.exchange(t, code, a)
	_, err := e.web.Exchange(ctx, code, oauth2.VerifierOption(a.verifier))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("replayed code: %v, want invalid_grant", err)
	}
	req := mustRequest(t, http.MethodGet, e.issuer+"/userinfo")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	if status, body := decodeDo(t, req); status != http.StatusUnauthorized {
		t.Errorf("access token from a replayed code still works: %d %v", status, body)
	}
	if _, err := e.web.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Error("refresh token from a replayed code still works")
	}
}

// TestScanLoginTickets: expired, reused, denied, another user's and
// another browser's tickets, each with its answer and nothing half-done.
func TestScanLoginTickets(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, nil)
	alice, _ := e.user(t, "o-alice")
	mallory, _ := e.user(t, "o-mallory")

	// Denied: the website gets access_denied with its state.
	b := newBrowser(t)
	a := e.authRequest(t)
	ticket, csrf := e.startLogin(t, b, a)
	if status, _ := e.mini(t, http.MethodPost, ticket, "approve", alice); status != http.StatusConflict {
		t.Errorf("approve before scan: %d, want 409", status)
	}
	e.mini(t, http.MethodPost, ticket, "scan", alice)
	if status, body := e.mini(t, http.MethodPost, ticket, "scan", mallory); status != http.StatusConflict {
		t.Errorf("second user's scan: %d %v, want 409", status, body)
	}
	if status, _ := e.mini(t, http.MethodGet, ticket, "", mallory); status != http.StatusConflict {
		t.Errorf("second user's view: %d, want 409", status)
	}
	if status, _ := e.mini(t, http.MethodPost, ticket, "approve", mallory); status != http.StatusConflict {
		t.Errorf("second user's approval: %d, want 409", status)
	}
	if status, body := e.mini(t, http.MethodPost, ticket, "deny", alice); status != http.StatusOK {
		t.Fatalf("deny: %d %v", status, body)
	}
	if status, _ := e.mini(t, http.MethodPost, ticket, "approve", alice); status != http.StatusConflict {
		t.Errorf("approve after deny: %d, want 409", status)
	}
	// Another browser can neither follow nor complete it.
	other := newBrowser(t)
	if resp, _ := other.get(e.issuer + "/login/status?ticket=" + ticket); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another browser's status: %d", resp.StatusCode)
	}
	if resp, _ := other.post(e.issuer+"/login/complete", url.Values{"ticket": {ticket}, "csrf": {csrf}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another browser's completion: %d, want 403 (CSRF)", resp.StatusCode)
	}
	// CSRF: no token, a wrong one, a foreign Origin.
	if resp, _ := b.post(e.issuer+"/login/complete", url.Values{"ticket": {ticket}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("completion without CSRF token: %d", resp.StatusCode)
	}
	b.origin = "https://evil.example.com"
	if resp, _ := e.complete(t, b, ticket, csrf); resp.StatusCode != http.StatusForbidden {
		t.Errorf("completion from a foreign origin: %d", resp.StatusCode)
	}
	b.origin = ""
	resp, _ := e.complete(t, b, ticket, csrf)
	if got := errorFrom(t, resp, a); got != "access_denied" {
		t.Fatalf("denied: %q", got)
	}
	// Reused: the ticket is spent.
	if resp, _ := e.complete(t, b, ticket, csrf); resp.StatusCode != http.StatusConflict || resp.Header.Get("Location") != "" {
		t.Errorf("reused ticket: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := e.count(t, "oauth2_authorization_codes"); n != 0 {
		t.Errorf("%d codes after a denial", n)
	}

	// Expired: scanning is refused (410), the page shows a new-code form,
	// and the new ticket works.
	a = e.authRequest(t)
	ticket, csrf = e.startLogin(t, b, a)
	e.clock.advance(3 * time.Minute)
	if status, body := e.mini(t, http.MethodPost, ticket, "scan", alice); status != http.StatusGone {
		t.Errorf("expired scan: %d %v, want 410", status, body)
	}
	if _, body := b.get(e.issuer + "/login/status?ticket=" + ticket); !strings.Contains(body, `"expired"`) {
		t.Errorf("expired status: %s", body)
	}
	// Back to real time: fosite checks auth_time against its own clock.
	e.clock.advance(-3 * time.Minute)
	resp, body := b.post(e.issuer+"/login/renew", url.Values{"ticket": {ticket}, "csrf": {csrf}})
	next := strings.TrimPrefix(resp.Header.Get("Location"), "/login?ticket=")
	if resp.StatusCode != http.StatusSeeOther || next == "" || next == ticket {
		t.Fatalf("renew: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if resp, _ := b.post(e.issuer+"/login/renew", url.Values{"ticket": {ticket}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("renew without CSRF: %d", resp.StatusCode)
	}
	// The old code died with the renewal: nobody can approve it any more
	// (else whoever saw it could, for a page the browser may go back to).
	if status, body := e.mini(t, http.MethodPost, ticket, "scan", mallory); status != http.StatusConflict {
		t.Errorf("scan of a renewed ticket's old code: %d %v, want 409", status, body)
	}
	if _, body := b.get(e.issuer + "/login/status?ticket=" + ticket); !strings.Contains(body, `"consumed"`) {
		t.Errorf("old ticket's status after renewal: %s", body)
	}
	e.approve(t, next, alice)
	resp, body = e.complete(t, b, next, csrf)
	codeFrom(t, resp, body, a)

	// Malformed and unknown tickets, missing and wrong tokens.
	for name, c := range map[string]struct {
		ticket, token string
		want          int
	}{
		"malformed":        {"../../admin", alice, http.StatusNotFound},
		"unknown":          {strings.Repeat("A", 32), alice, http.StatusNotFound},
		"no token":         {next, "", http.StatusUnauthorized},
		"forged token":     {next, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", http.StatusUnauthorized},
		"oversized ticket": {strings.Repeat("A", 5000), alice, http.StatusNotFound},
	} {
		if status, body := e.mini(t, http.MethodPost, c.ticket, "scan", c.token); status != c.want {
			t.Errorf("%s: %d %v, want %d", name, status, body, c.want)
		}
	}
}

// TestScanLoginRaces: of many users scanning one ticket at once exactly
// one binds it; of many completions of one approved ticket exactly one
// gets a code.
func TestScanLoginRaces(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, nil)
	tokens := make([]string, 6)
	for i := range tokens {
		tokens[i], _ = e.user(t, "o-racer-"+string(rune('a'+i)))
	}
	b := newBrowser(t)
	a := e.authRequest(t)
	ticket, csrf := e.startLogin(t, b, a)
	var wg sync.WaitGroup
	statuses := make([]int, len(tokens))
	for i, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _ = e.mini(t, http.MethodPost, ticket, "scan", tok)
		}()
	}
	wg.Wait()
	winner := -1
	for i, s := range statuses {
		if s == http.StatusOK {
			if winner >= 0 {
				t.Fatalf("two scans won: %v", statuses)
			}
			winner = i
		} else if s != http.StatusConflict {
			t.Fatalf("scan statuses %v", statuses)
		}
	}
	if winner < 0 {
		t.Fatalf("no scan won: %v", statuses)
	}
	if status, _ := e.mini(t, http.MethodPost, ticket, "approve", tokens[winner]); status != http.StatusOK {
		t.Fatal("approve")
	}
	codes := make(chan int, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := e.complete(t, b, ticket, csrf)
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	won := 0
	for s := range codes {
		if s == http.StatusSeeOther || s == http.StatusFound {
			won++
		}
	}
	if won != 1 || e.count(t, "oauth2_authorization_codes") != 1 {
		t.Fatalf("%d completions redirected, %d codes stored; want 1 and 1", won, e.count(t, "oauth2_authorization_codes"))
	}
}
