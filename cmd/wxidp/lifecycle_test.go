package main

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lifecycleEnv is a server with a mini-program (public client), a service
// (confidential, may introspect any token) and a plain confidential client.
type lifecycleEnv struct {
	*wechatEnv
	rsSecret, otherSecret string
}

func newLifecycleEnv(t *testing.T, mutate ...func(*serveConfig)) *lifecycleEnv {
	t.Helper()
	e := newWeChatEnv(t, mutate...)
	e.miniProgram(t, "mp", "wxapp1")
	return &lifecycleEnv{
		wechatEnv:   e,
		rsSecret:    e.registerClient(t, map[string]any{"client_id": "rs", "scope": "introspect read"}),
		otherSecret: e.registerClient(t, map[string]any{"client_id": "other", "scope": "read"}),
	}
}

// loginTokens logs a fresh WeChat user in with openid and offline_access.
func (e *lifecycleEnv) loginTokens(t *testing.T, openid string) map[string]any {
	t.Helper()
	status, _, body := e.login(t, "mp", e.wx.Login("wxapp1", openid, ""), "scope", "openid offline_access")
	if status != 200 {
		t.Fatalf("login: %d %v", status, body)
	}
	return body
}

func (e *lifecycleEnv) refresh(t *testing.T, rt string) (int, map[string]any) {
	t.Helper()
	status, _, body := e.postToken(t, "", "", url.Values{"grant_type": {"refresh_token"}, "client_id": {"mp"}, "refresh_token": {rt}})
	return status, body
}

// introspect asks as client (user, pass) about token.
func (e *lifecycleEnv) introspect(t *testing.T, user, pass, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.issuer+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return decodeDo(t, req)
}

func (e *lifecycleEnv) active(t *testing.T, token string) bool {
	t.Helper()
	status, body := e.introspect(t, "rs", e.rsSecret, token)
	if status != 200 {
		t.Fatalf("introspect: %d %v", status, body)
	}
	return body["active"] == true
}

func (e *lifecycleEnv) revoke(t *testing.T, form url.Values, user, pass string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.issuer+"/oauth2/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	status, _ := do(t, req)
	return status
}

func (e *lifecycleEnv) userinfo(t *testing.T, token string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.issuer+"/userinfo", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestRefreshRotationAndReuse(t *testing.T) {
	t.Parallel()
	e := newLifecycleEnv(t)
	first := e.loginTokens(t, "o-rot")
	firstIat := int64(unverifiedClaims(t, first["access_token"].(string))["iat"].(float64))
	// iat has one-second resolution: let a second boundary pass, so a
	// refreshed token that kept the login's iat would be caught.
	for time.Now().Unix() <= firstIat {
		time.Sleep(20 * time.Millisecond)
	}
	status, second := e.refresh(t, first["refresh_token"].(string))
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, second)
	}
	if second["refresh_token"] == first["refresh_token"] || second["access_token"] == first["access_token"] || second["id_token"] == nil {
		t.Fatal("refresh must return a new refresh token, access token and ID token")
	}
	for _, tok := range []string{second["access_token"].(string), second["id_token"].(string)} {
		c := unverifiedClaims(t, tok)
		if iat := int64(c["iat"].(float64)); iat <= firstIat {
			t.Errorf("refreshed token carries the login's iat %d", iat)
		}
	}
	if e.active(t, first["access_token"].(string)) || e.active(t, first["refresh_token"].(string)) {
		t.Error("the rotated tokens are still active")
	}
	if !e.active(t, second["access_token"].(string)) {
		t.Fatal("the new access token is not active")
	}

	// Reuse of the rotated refresh token revokes the whole grant.
	status, body := e.refresh(t, first["refresh_token"].(string))
	if status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", status, body)
	}
	for name, tok := range map[string]string{"access": second["access_token"].(string), "refresh": second["refresh_token"].(string)} {
		if e.active(t, tok) {
			t.Errorf("after reuse the chain's %s token is still active", name)
		}
	}
	if status, h := e.userinfo(t, second["access_token"].(string)); status != 401 || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("userinfo after reuse: %d %q", status, h.Get("WWW-Authenticate"))
	}
}

// TestConcurrentRefresh: 32 refreshes of one token race. It asserts what
// docs/token-lifecycle.md promises: exactly one 200, 31 x 400, never a 5xx;
// each loser gets invalid_request ("Please retry": it lost the conditional
// update, nothing else happens) or invalid_grant (it came after the winner
// committed: reuse, which revokes the grant, the winner's new tokens
// included). Which losers come late depends on timing, so the winner's
// tokens are checked against the outcome the losers saw.
func TestConcurrentRefresh(t *testing.T) {
	t.Parallel()
	e := newLifecycleEnv(t)
	login := e.loginTokens(t, "o-race")
	rt := login["refresh_token"].(string)
	const n = 32
	type answer struct {
		status int
		body   map[string]any
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			status, body := e.refresh(t, rt)
			answers[i] = answer{status, body}
		})
	}
	wg.Wait()

	var winner map[string]any
	statuses := map[int]int{}
	losers := map[string]int{}
	for _, a := range answers {
		statuses[a.status]++
		switch {
		case a.status == http.StatusOK:
			winner = a.body
		case a.status == http.StatusBadRequest:
			code, _ := a.body["error"].(string)
			desc, _ := a.body["error_description"].(string)
			losers[code]++
			switch code {
			case "invalid_grant":
			case "invalid_request":
				if !strings.Contains(desc, "Please retry") {
					t.Errorf("invalid_request loser without the documented \"Please retry\": %v", a.body)
				}
			default:
				t.Errorf("loser got %q, want invalid_request or invalid_grant: %v", code, a.body)
			}
		default:
			t.Errorf("status %d (%v): want 200 for the winner, 400 for the losers", a.status, a.body)
		}
	}
	if statuses[http.StatusOK] != 1 || statuses[http.StatusBadRequest] != n-1 {
		t.Fatalf("statuses %v: want exactly one 200 and %d x 400", statuses, n-1)
	}
	t.Logf("losers: %v", losers)

	// The presented token and the access token issued with it are spent
	// whatever happened.
	if e.active(t, rt) || e.active(t, login["access_token"].(string)) {
		t.Error("the raced refresh token or its access token is still active")
	}
	newAT, newRT := winner["access_token"].(string), winner["refresh_token"].(string)
	if losers["invalid_grant"] > 0 {
		// A late loser was reuse: the grant is revoked.
		if e.active(t, newAT) || e.active(t, newRT) {
			t.Errorf("%d losers were reuse, yet the winner's new tokens are still active", losers["invalid_grant"])
		}
		if status, body := e.refresh(t, newRT); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("refresh with the winner's revoked token: %d %v, want 400 invalid_grant", status, body)
		}
		return
	}
	// Every loser lost the conditional update: nothing else happened, and
	// the winner carries on.
	if !e.active(t, newAT) || !e.active(t, newRT) {
		t.Error("no loser was reuse, yet the winner's new tokens were revoked")
	}
	if status, body := e.refresh(t, newRT); status != http.StatusOK {
		t.Errorf("refresh with the winner's token: %d %v", status, body)
	}
}

func TestRefreshGrace(t *testing.T) {
	t.Parallel()
	e := newLifecycleEnv(t, func(c *serveConfig) { c.RefreshGrace = time.Minute })
	rt := e.loginTokens(t, "o-grace")["refresh_token"].(string)
	status, second := e.refresh(t, rt)
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, second)
	}
	// The response was "lost": one retry within the grace works ...
	status, retry := e.refresh(t, rt)
	if status != 200 {
		t.Fatalf("retry within grace: %d %v", status, retry)
	}
	// ... a second one is reuse, and revokes the grant.
	if status, body := e.refresh(t, rt); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("second retry: %d %v", status, body)
	}
	if e.active(t, retry["refresh_token"].(string)) {
		t.Error("grant not revoked after the grace was used up")
	}
}

func TestRevocation(t *testing.T) {
	t.Parallel()
	e := newLifecycleEnv(t)
	tok := e.loginTokens(t, "o-rev")
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)

	// Another client cannot revoke it: 200, nothing changes.
	if status := e.revoke(t, url.Values{"token": {rt}}, "other", e.otherSecret); status != 200 {
		t.Fatalf("foreign revoke: %d", status)
	}
	if !e.active(t, rt) || !e.active(t, at) {
		t.Fatal("another client revoked the token")
	}
	// Unknown tokens: 200.
	if status := e.revoke(t, url.Values{"token": {"nonsense"}, "client_id": {"mp"}}, "", ""); status != 200 {
		t.Fatalf("unknown token: %d", status)
	}
	// The public client revokes its access token: the whole grant goes.
	if status := e.revoke(t, url.Values{"token": {at}, "token_type_hint": {"access_token"}, "client_id": {"mp"}}, "", ""); status != 200 {
		t.Fatalf("revoke: %d", status)
	}
	if e.active(t, at) || e.active(t, rt) {
		t.Fatal("revoking the access token left the grant active")
	}
	if status, _ := e.refresh(t, rt); status != 400 {
		t.Fatalf("refresh after revocation: %d", status)
	}

	// A refresh token revoked by its client revokes the chain too.
	tok = e.loginTokens(t, "o-rev2")
	if status := e.revoke(t, url.Values{"token": {tok["refresh_token"].(string)}, "client_id": {"mp"}}, "", ""); status != 200 {
		t.Fatal("revoke refresh token")
	}
	if e.active(t, tok["access_token"].(string)) {
		t.Error("revoking the refresh token left its access token active")
	}

	// Bad input.
	if status := e.revoke(t, url.Values{"token": {"x"}}, "other", "wrong-secret-wrong-secret-wrong"); status != 401 {
		t.Errorf("wrong client secret: %d", status)
	}
	if status := e.revoke(t, url.Values{}, "other", e.otherSecret); status != 400 {
		t.Errorf("empty body: %d", status)
	}
}

func TestIntrospection(t *testing.T) {
	t.Parallel()
	// The provider's clock, shifted by back: tokens minted while it is set
	// expired long ago, with no waiting.
	var back atomic.Int64
	e := newLifecycleEnv(t, func(c *serveConfig) {
		c.now = func() time.Time { return time.Now().Add(-time.Duration(back.Load())) }
	})
	tok := e.loginTokens(t, "o-intro")
	at := tok["access_token"].(string)
	status, body := e.introspect(t, "rs", e.rsSecret, at)
	if status != 200 || body["active"] != true {
		t.Fatalf("introspect: %d %v", status, body)
	}
	for _, k := range []string{"scope", "client_id", "sub", "aud", "iss", "exp", "iat", "token_type"} {
		if body[k] == nil {
			t.Errorf("introspection lacks %s: %v", k, body)
		}
	}
	if body["client_id"] != "mp" || body["iss"] != e.issuer || body["token_type"] != "Bearer" {
		t.Errorf("introspection %v", body)
	}
	// A client without the introspect scope sees others' tokens inactive,
	// its own active.
	if _, body := e.introspect(t, "other", e.otherSecret, at); body["active"] != false || len(body) != 1 {
		t.Errorf("foreign token visible to a client without introspect: %v", body)
	}
	_, _, own := e.postToken(t, "other", e.otherSecret, url.Values{"grant_type": {"client_credentials"}})
	if _, body := e.introspect(t, "other", e.otherSecret, own["access_token"].(string)); body["active"] != true {
		t.Errorf("own token: %v", body)
	}
	// Refresh tokens introspect too.
	if _, body := e.introspect(t, "rs", e.rsSecret, tok["refresh_token"].(string)); body["active"] != true || body["token_type"] != "refresh_token" {
		t.Errorf("refresh token: %v", body)
	}
	// Bad input.
	for name, tc := range map[string]struct {
		user, pass string
		status     int
	}{
		"no auth":       {"", "", 401},
		"wrong secret":  {"rs", "nope", 401},
		"public client": {"mp", "", 401},
		"unknown":       {"ghost", "x", 401},
	} {
		if status, body := e.introspect(t, tc.user, tc.pass, at); status != tc.status || body["error"] != "invalid_client" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	if status, body := e.introspect(t, "rs", e.rsSecret, ""); status != 400 {
		t.Errorf("missing token: %d %v", status, body)
	}
	// Expired: minted an hour ago, it lived 15 minutes (testConfig).
	back.Store(int64(time.Hour))
	expired := e.loginTokens(t, "o-intro-expired")["access_token"].(string)
	back.Store(0)
	if status, body := e.introspect(t, "rs", e.rsSecret, expired); status != 200 || body["active"] != false || len(body) != 1 {
		t.Errorf("expired access token: %d %v", status, body)
	}
	if status, h := e.userinfo(t, expired); status != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("userinfo with an expired token: %d", status)
	}
	if !e.active(t, at) {
		t.Error("the unexpired access token became inactive")
	}
}

func TestUserInfoRejectsBadTokens(t *testing.T) {
	t.Parallel()
	e := newLifecycleEnv(t)
	tok := e.loginTokens(t, "o-ui")
	cases := map[string]string{
		"garbage":       "not-a-token",
		"refresh token": tok["refresh_token"].(string),
		"id token":      tok["id_token"].(string),
		"tampered":      tok["access_token"].(string)[:len(tok["access_token"].(string))-4] + "AAAA",
	}
	for name, token := range cases {
		status, h := e.userinfo(t, token)
		if status != 401 || !strings.Contains(h.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
			t.Errorf("%s: %d %q", name, status, h.Get("WWW-Authenticate"))
		}
	}
	if status, h := e.userinfo(t, ""); status != 401 || h.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d", status)
	}
	if status, _ := e.userinfo(t, tok["access_token"].(string)); status != 200 {
		t.Fatalf("valid token: %d", status)
	}
}
