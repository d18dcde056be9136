package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/wxidp/wxidp/janitor"
	"github.com/wxidp/wxidp/storage/postgres"
)

const day = 24 * time.Hour

// introspection asks as "rs" about token and returns the answer.
func (e *peopleEnv) introspection(t *testing.T, token string) map[string]any {
	t.Helper()
	status, _, body := e.postForm(t, "/oauth2/introspect", nil, url.Values{"token": {token}}, "rs", e.rsSecret)
	if status != http.StatusOK {
		t.Fatalf("introspect: %d %v", status, body)
	}
	return body
}

func (e *peopleEnv) refreshScope(t *testing.T, client, rt, scope string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {rt}}
	if scope != "" {
		form.Set("scope", scope)
	}
	status, _, body := e.postToken(t, "", "", form)
	return status, body
}

// TestSessionMaxAge: a chain refreshed every (simulated) day ends at
// WXIDP_SESSION_MAX_AGE after the login, with invalid_grant; no refresh
// token of the chain outlives that moment, and auth_time stays the
// login's. The server's clock runs ahead of the real one (fosite stamps
// iat and exp of refreshed tokens with the real clock, and checks expiry
// with it).
func TestSessionMaxAge(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	e := newPeopleEnvWith(t, clock, func(c *serveConfig) { c.SessionMaxAge, c.RefreshTokenTTL = 10*day, 30*day })
	ctx := context.Background()
	op, err := oidc.NewProvider(ctx, e.issuer)
	if err != nil {
		t.Fatal(err)
	}
	verify := op.Verifier(&oidc.Config{ClientID: "mp"})

	tokens := e.signIn(t, "o-ivy", "")
	deadline := clock.now().Add(10 * day)
	authTime := func(raw string) int64 {
		t.Helper()
		idt, err := verify.Verify(ctx, raw)
		if err != nil {
			t.Fatalf("ID token: %v", err)
		}
		if idt.Expiry.After(deadline.Add(time.Second)) {
			t.Errorf("ID token expires %v, after the session limit %v", idt.Expiry, deadline)
		}
		var c struct {
			AuthTime int64 `json:"auth_time"`
		}
		_ = idt.Claims(&c)
		return c.AuthTime
	}
	first := authTime(tokens["id_token"].(string))
	rt := tokens["refresh_token"].(string)
	refreshes := 0
	for range 12 {
		clock.advance(day)
		status, body := e.refresh(t, rt)
		if status != http.StatusOK {
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" ||
				!strings.Contains(body["error_description"].(string), "log in again") {
				t.Fatalf("refresh at day %d: %d %v, want invalid_grant asking to log in again", refreshes+1, status, body)
			}
			break
		}
		refreshes++
		rt = body["refresh_token"].(string)
		if got := authTime(body["id_token"].(string)); got != first {
			t.Errorf("refreshed ID token auth_time %d, want the login's %d", got, first)
		}
		at := unverifiedClaims(t, body["access_token"].(string))
		if exp := int64(at["exp"].(float64)); exp > deadline.Unix()+1 {
			t.Errorf("access token exp %d after the session limit %d", exp, deadline.Unix())
		}
		// The refresh token lifetime (30 days) is longer than what is
		// left of the session: clipped.
		if exp := int64(e.introspection(t, rt)["exp"].(float64)); exp > deadline.Unix()+1 {
			t.Errorf("refresh token exp %d after the session limit %d", exp, deadline.Unix())
		}
	}
	if refreshes != 9 {
		t.Errorf("%d daily refreshes succeeded, want 9 (the tenth day is the limit)", refreshes)
	}
}

// TestClientLifetimes: a client's own lifetimes, shorter than the
// server's, win; longer ones are refused at registration.
func TestClientLifetimes(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	e := newPeopleEnvWith(t, clock, nil)
	for _, bad := range []map[string]any{
		{"access_token_ttl_seconds": 3600}, // the server's is 15 minutes in tests
		{"refresh_token_ttl_seconds": 1000 * 86400},
		{"session_max_age_seconds": 1000 * 86400},
		{"access_token_ttl_seconds": -1},
		{"refresh_token_ttl_seconds": "1h"},
	} {
		body := map[string]any{"client_id": "short", "token_endpoint_auth_method": "none", "scope": "openid offline_access",
			"wechat_appid": "wxpeople", "wechat_app_secret": "secret-of-wxpeople"}
		for k, v := range bad {
			body[k] = v
		}
		if status, resp := e.adminJSON(t, "POST", "/admin/clients", testAdminToken, body); status != http.StatusBadRequest {
			t.Errorf("register with %v: %d %v, want 400", bad, status, resp)
		} else if bad["access_token_ttl_seconds"] == 3600 && resp["error"] != "invalid_client_metadata" {
			t.Errorf("register with %v: %v, want invalid_client_metadata", bad, resp)
		}
	}
	status, reg := e.adminJSON(t, "POST", "/admin/clients", testAdminToken, map[string]any{
		"client_id": "short", "token_endpoint_auth_method": "none", "scope": "openid offline_access",
		"wechat_appid": "wxpeople", "wechat_app_secret": "secret-of-wxpeople",
		"access_token_ttl_seconds": 60, "refresh_token_ttl_seconds": 3600, "session_max_age_seconds": 7200,
	})
	if status != http.StatusCreated || reg["access_token_ttl_seconds"] != float64(60) || reg["session_max_age_seconds"] != float64(7200) {
		t.Fatalf("register: %d %v", status, reg)
	}
	// A client session shorter than the access token lifetime clips even
	// the login's tokens.
	if status, reg := e.adminJSON(t, "POST", "/admin/clients", testAdminToken, map[string]any{
		"client_id": "brief", "token_endpoint_auth_method": "none", "scope": "openid offline_access",
		"wechat_appid": "wxpeople", "wechat_app_secret": "secret-of-wxpeople", "session_max_age_seconds": 300,
	}); status != http.StatusCreated {
		t.Fatalf("register brief: %d %v", status, reg)
	}
	status, _, brief := e.login(t, "brief", e.wx.Login("wxpeople", "o-jay", ""), "scope", "openid offline_access")
	if status != http.StatusOK || brief["expires_in"].(float64) > 300 {
		t.Fatalf("login with a 5-minute session: %d %v, want expires_in <= 300", status, brief)
	}
	limit := clock.now().Unix() + 300 + 1
	if exp := int64(unverifiedClaims(t, brief["id_token"].(string))["exp"].(float64)); exp > limit {
		t.Errorf("ID token exp %d past the session's end %d", exp, limit)
	}
	if exp := int64(e.introspection(t, brief["refresh_token"].(string))["exp"].(float64)); exp > limit {
		t.Errorf("refresh token exp %d past the session's end %d", exp, limit)
	}

	status, _, tokens := e.login(t, "short", e.wx.Login("wxpeople", "o-jay", ""), "scope", "openid offline_access")
	if status != http.StatusOK || tokens["expires_in"].(float64) > 60 {
		t.Fatalf("login: %d %v, want expires_in <= 60", status, tokens)
	}
	now := clock.now().Unix()
	if exp := int64(e.introspection(t, tokens["refresh_token"].(string))["exp"].(float64)); exp > now+3600+1 {
		t.Errorf("refresh token exp in %ds, want <= 3600", exp-now)
	}
	rt := tokens["refresh_token"].(string)
	clock.advance(time.Hour)
	status, body := e.refreshScope(t, "short", rt, "")
	if status != http.StatusOK {
		t.Fatalf("refresh within the session: %d %v", status, body)
	}
	clock.advance(time.Hour + time.Minute)
	if status, body := e.refreshScope(t, "short", body["refresh_token"].(string), ""); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("refresh past the client's session max age: %d %v", status, body)
	}
	// The admin API shows them; the CLI sets them.
	if out, err := runClients(t, e.server, "", "update", "short", "--access-token-ttl-seconds", "120"); err != nil {
		t.Fatalf("clients update: %v %s", err, out)
	}
	if _, got := e.adminJSON(t, "GET", "/admin/clients/short", testAdminToken, nil); got["access_token_ttl_seconds"] != float64(120) || got["refresh_token_ttl_seconds"] != float64(3600) {
		t.Errorf("after the CLI update: %v", got)
	}
}

// TestNarrowerRefresh: a refresh may ask for a subset of the grant; the
// access token carries only it, the chain keeps the grant; more is
// invalid_scope.
func TestNarrowerRefresh(t *testing.T) {
	t.Parallel()
	e := newPeopleEnv(t)
	tokens := e.signIn(t, "o-kim", "")
	status, narrow := e.refreshScope(t, "mp", tokens["refresh_token"].(string), "profile")
	if status != http.StatusOK {
		t.Fatalf("narrower refresh: %d %v", status, narrow)
	}
	if got := unverifiedClaims(t, narrow["access_token"].(string))["scope"]; got != "profile" {
		t.Errorf("narrowed access token scope %v, want profile", got)
	}
	if narrow["scope"] != "profile" {
		t.Errorf("response scope %v, want profile", narrow["scope"])
	}
	if _, ok := narrow["id_token"]; ok {
		t.Error("an ID token without openid in the narrowed scope")
	}
	// With a profile, a narrowed ID token carries only the narrowed
	// scope's claims.
	if status, _, body := e.bearer(t, "PATCH", "/account", narrow["access_token"].(string), `{"nickname":"kim"}`); status != http.StatusOK {
		t.Fatalf("PATCH: %d %v", status, body)
	}
	status, narrow = e.refreshScope(t, "mp", narrow["refresh_token"].(string), "openid")
	if status != http.StatusOK {
		t.Fatalf("refresh narrowed to openid: %d %v", status, narrow)
	}
	if c := unverifiedClaims(t, narrow["id_token"].(string)); c["nickname"] != nil {
		t.Errorf("ID token narrowed to openid carries nickname: %v", c)
	}
	status, full := e.refreshScope(t, "mp", narrow["refresh_token"].(string), "")
	if status != http.StatusOK {
		t.Fatalf("refresh after narrowing: %d %v", status, full)
	}
	if got := unverifiedClaims(t, full["access_token"].(string))["scope"]; got != "openid offline_access profile phone" {
		t.Errorf("full refresh after narrowing: scope %v", got)
	}
	if c := unverifiedClaims(t, full["id_token"].(string)); c["nickname"] != "kim" {
		t.Errorf("ID token of the whole grant lacks the nickname: %v", c)
	}
	status, again := e.refreshScope(t, "mp", full["refresh_token"].(string), "openid offline_access profile phone")
	if status != http.StatusOK || unverifiedClaims(t, again["access_token"].(string))["scope"] != "openid offline_access profile phone" {
		t.Fatalf("asking for the whole grant: %d %v", status, again)
	}
	if status, body := e.refreshScope(t, "mp", again["refresh_token"].(string), "profile wechat_data"); status != http.StatusBadRequest || body["error"] != "invalid_scope" {
		t.Errorf("asking for more: %d %v, want invalid_scope", status, body)
	}
	// The refused request changed nothing: the token still refreshes.
	if status, body := e.refreshScope(t, "mp", again["refresh_token"].(string), ""); status != http.StatusOK {
		t.Errorf("refresh after the refused one: %d %v", status, body)
	}
}

// TestLateReuseRevokesChain: a rotated refresh token presented 20 days
// later, after the janitor ran, is still recognised as reuse and revokes
// the chain.
func TestLateReuseRevokesChain(t *testing.T) {
	t.Parallel()
	e := newPeopleEnvWith(t, &testClock{}, func(c *serveConfig) { c.RefreshTokenTTL = 30 * day })
	tokens := e.signIn(t, "o-lou", "")
	old := tokens["refresh_token"].(string)
	status, body := e.refresh(t, old)
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, body)
	}
	current := body["refresh_token"].(string)
	later := func() time.Time { return time.Now().Add(20 * day) }
	pool, err := postgres.Open(context.Background(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if stats, err := janitor.New(postgres.New(pool), janitor.Options{Now: later}).RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("janitor: %v", stats)
	}
	if status, body := e.refresh(t, old); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", status, body)
	}
	if e.active(t, current) {
		t.Error("the chain's current refresh token survived a reuse 20 days later")
	}
}

// TestRefreshTokenPrefix: refresh tokens carry wxrt_, and one spelled as
// before (ory_rt_) still works.
func TestRefreshTokenPrefix(t *testing.T) {
	t.Parallel()
	e := newPeopleEnv(t)
	rt := e.signIn(t, "o-max", "")["refresh_token"].(string)
	if !strings.HasPrefix(rt, "wxrt_") {
		t.Fatalf("refresh token %.12s…, want the wxrt_ prefix", rt)
	}
	legacy := "ory_rt_" + strings.TrimPrefix(rt, "wxrt_")
	status, body := e.refresh(t, legacy)
	if status != http.StatusOK || !strings.HasPrefix(body["refresh_token"].(string), "wxrt_") {
		t.Fatalf("refresh with the old spelling: %d %v", status, body)
	}
	if status, body := e.refresh(t, "wxrt_"+strings.TrimPrefix(rt, "wxrt_")); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("reusing it under the new spelling: %d %v, want invalid_grant", status, body)
	}
}

// TestScanLoginSessionMaxAge: a website with a 5-minute session gets an ID
// token that ends with it, a browser login older than that asks for a new
// scan, and its token may not change the user's profile (only the
// mini-program's may).
func TestScanLoginSessionMaxAge(t *testing.T) {
	t.Parallel()
	e := newScanEnv(t, map[string]any{"session_max_age_seconds": 300, "scope": "openid offline_access profile"})
	userTok, _ := e.user(t, "o-nina")
	b := newBrowser(t)
	a := e.authRequest(t, oauth2.SetAuthURLParam("scope", "openid offline_access profile"))
	ticket, csrf := e.startLogin(t, b, a)
	e.approve(t, ticket, userTok)
	resp, body := e.complete(t, b, ticket, csrf)
	tok, _, claims := e.exchange(t, codeFrom(t, resp, body, a), a)
	if exp, auth := claims["exp"].(float64), claims["auth_time"].(float64); exp > auth+300 {
		t.Errorf("ID token exp %v is past auth_time %v + 300 s", exp, auth)
	}
	if tok.Expiry.After(time.Now().Add(301 * time.Second)) {
		t.Errorf("access token expires %v, past the 5-minute session", tok.Expiry)
	}
	req, _ := http.NewRequest(http.MethodPatch, e.issuer+"/account", strings.NewReader(`{"nickname":"tracker"}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	if status, body := decodeDo(t, req); status != http.StatusForbidden {
		t.Errorf("PATCH /account with a website's token: %d %v, want 403", status, body)
	}
	// Within the session a second authorization rides the browser login;
	// past it, a new scan is asked for.
	a2 := e.authRequest(t)
	resp, body = b.get(a2.url)
	codeFrom(t, resp, body, a2)
	// Two minutes on, max_age=600 still rides the login, max_age=60 does
	// not.
	e.clock.advance(2 * time.Minute)
	a3 := e.authRequest(t, oauth2.SetAuthURLParam("max_age", "600"))
	resp, body = b.get(a3.url)
	codeFrom(t, resp, body, a3)
	e.startLogin(t, b, e.authRequest(t, oauth2.SetAuthURLParam("max_age", "60")))
	e.clock.advance(4 * time.Minute)
	e.startLogin(t, b, e.authRequest(t, oauth2.SetAuthURLParam("max_age", "600")))
}
