package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
	"github.com/wxidp/wxidp/storage/postgres"
)

// wechatEnv is a running server wired to a fake WeChat over real HTTP.
type wechatEnv struct {
	*server
	wx   *wechattest.Server
	pool *pgxpool.Pool
	dsn  string
}

func newWeChatEnv(t *testing.T, mutate ...func(*serveConfig)) *wechatEnv {
	t.Helper()
	dsn := migratedDB(t)
	wx := wechattest.NewServer(t)
	cfg := testConfig(dsn)
	cfg.WeChatAPIBase = wx.URL
	for _, m := range mutate {
		m(&cfg)
	}
	srv := startServer(t, cfg)
	pool, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &wechatEnv{server: srv, wx: wx, pool: pool, dsn: dsn}
}

// miniProgram registers a public client bound to a fresh app in the fake.
func (e *wechatEnv) miniProgram(t *testing.T, clientID, appID string) {
	t.Helper()
	e.wx.AddApp(appID, "secret-of-"+appID)
	status, body := e.adminJSON(t, "POST", "/admin/clients", testAdminToken, map[string]any{
		"client_id": clientID, "token_endpoint_auth_method": "none",
		"scope":        "openid offline_access profile phone",
		"wechat_appid": appID, "wechat_app_secret": "secret-of-" + appID,
	})
	if status != http.StatusCreated {
		t.Fatalf("register mini-program: %d %v", status, body)
	}
	if _, ok := body["client_secret"]; ok {
		t.Error("a public client got a client_secret")
	}
	if strings.Contains(stringify(body), "secret-of-") {
		t.Error("the WeChat app secret was returned")
	}
}

func (e *wechatEnv) login(t *testing.T, clientID, code string, kv ...string) (int, http.Header, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {grants.WeChatCode}, "client_id": {clientID}, "code": {code}}
	for i := 0; i < len(kv); i += 2 {
		form.Set(kv[i], kv[i+1])
	}
	return e.postToken(t, "", "", form)
}

// count returns the rows of a table, to prove a failed request wrote none.
func (e *wechatEnv) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWeChatLoginEndToEnd(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxapp1")
	ctx := context.Background()

	code := e.wx.Login("wxapp1", "openid-alice", "")
	status, _, body := e.login(t, "mp", code, "scope", "openid offline_access")
	if status != http.StatusOK {
		t.Fatalf("login: %d %v", status, body)
	}
	for _, k := range []string{"access_token", "refresh_token", "id_token", "expires_in", "scope", "token_type"} {
		if body[k] == nil {
			t.Errorf("response lacks %s", k)
		}
	}
	sessionKey := e.wx.SessionKey("wxapp1", "openid-alice")
	if strings.Contains(stringify(body), sessionKey) {
		t.Fatal("session_key in the token response")
	}

	// Access token: RFC 9068, verifiable offline with go-oidc.
	at := body["access_token"].(string)
	keySet := oidc.NewRemoteKeySet(ctx, e.issuer+"/.well-known/jwks.json")
	if _, err := keySet.VerifySignature(ctx, at); err != nil {
		t.Fatalf("go-oidc: %v", err)
	}
	claims := unverifiedClaims(t, at)
	sub, _ := claims["sub"].(string)
	if len(sub) != 36 || strings.Contains(sub, "openid") || claims["client_id"] != "mp" {
		t.Fatalf("access token claims %v: sub must be our opaque user id", claims)
	}
	if strings.Contains(stringify(claims), sessionKey) {
		t.Fatal("session_key inside the access token")
	}

	// ID token through go-oidc's discovery-based verifier.
	p, err := oidc.NewProvider(ctx, e.issuer)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: "mp"}).Verify(ctx, body["id_token"].(string))
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var idc struct {
		AMR      []string `json:"amr"`
		AuthTime int64    `json:"auth_time"`
		AtHash   string   `json:"at_hash"`
	}
	if err := idt.Claims(&idc); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != sub || len(idc.AMR) != 1 || idc.AMR[0] != "wechat" || idc.AuthTime == 0 {
		t.Fatalf("ID token sub %q claims %+v", idt.Subject, idc)
	}
	if err := idt.VerifyAccessToken(at); err != nil {
		t.Errorf("at_hash: %v", err)
	}

	// The refresh token refreshes, for the same subject.
	status, _, ref := e.postToken(t, "", "", url.Values{"grant_type": {"refresh_token"}, "client_id": {"mp"},
		"refresh_token": {body["refresh_token"].(string)}})
	if status != http.StatusOK || ref["access_token"] == nil || ref["refresh_token"] == body["refresh_token"] {
		t.Fatalf("refresh: %d %v", status, ref)
	}
	if unverifiedClaims(t, ref["access_token"].(string))["sub"] != sub {
		t.Error("refreshed token has another subject")
	}

	// A second login is the same user; without offline_access, no refresh
	// token; without openid, no ID token.
	status, _, again := e.login(t, "mp", e.wx.Login("wxapp1", "openid-alice", ""))
	if status != http.StatusOK || unverifiedClaims(t, again["access_token"].(string))["sub"] != sub {
		t.Fatalf("second login: %d %v", status, again)
	}
	if again["refresh_token"] != nil || again["id_token"] != nil {
		t.Errorf("tokens beyond the granted scopes: %v", again)
	}
	if n := e.count(t, "users"); n != 1 {
		t.Errorf("%d users after two logins of one person", n)
	}

	// Userinfo answers for the user; the access token the refresh replaced
	// no longer works.
	req, _ := http.NewRequest(http.MethodGet, e.issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+ref["access_token"].(string))
	if status, out := do(t, req); status != 200 || !strings.Contains(string(out), sub) {
		t.Fatalf("userinfo: %d %s", status, out)
	}
	// Without the openid scope, userinfo is refused (OIDC Core §5.3).
	req.Header.Set("Authorization", "Bearer "+again["access_token"].(string))
	if status, _ := do(t, req); status != http.StatusForbidden {
		t.Errorf("userinfo without openid: %d, want 403", status)
	}
	req.Header.Set("Authorization", "Bearer "+at)
	if status, _ := do(t, req); status != 401 {
		t.Errorf("userinfo with the access token a refresh replaced: %d, want 401", status)
	}

	// Nothing secret reached the logs.
	logs := e.logs.String()
	for _, s := range []string{sessionKey, code, "secret-of-wxapp1", at} {
		if strings.Contains(logs, s) {
			t.Errorf("log contains a secret (%.6s...)", s)
		}
	}
}

func TestWeChatIdentityLinking(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp1", "wxapp1")
	e.miniProgram(t, "mp2", "wxapp2")
	subject := func(client, app, openid, unionid string) string {
		t.Helper()
		status, _, body := e.login(t, client, e.wx.Login(app, openid, unionid))
		if status != 200 {
			t.Fatalf("login %s/%s: %d %v", app, openid, status, body)
		}
		return unverifiedClaims(t, body["access_token"].(string))["sub"].(string)
	}
	// Two apps of one Open Platform account: one user.
	if a, b := subject("mp1", "wxapp1", "o-bob-1", "u-bob"), subject("mp2", "wxapp2", "o-bob-2", "u-bob"); a != b {
		t.Error("two apps sharing a unionid gave two users")
	}
	// No unionid: two apps, two users.
	if a, b := subject("mp1", "wxapp1", "o-carol-1", ""), subject("mp2", "wxapp2", "o-carol-2", ""); a == b {
		t.Error("identities without unionid in two apps were merged")
	}
	// An identity that later gains a unionid keeps its user.
	first := subject("mp1", "wxapp1", "o-dave", "")
	if later := subject("mp1", "wxapp1", "o-dave", "u-dave"); later != first {
		t.Error("gaining a unionid changed the user")
	}
}

func TestWeChatConcurrentFirstLogins(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxapp1")
	const n = 20
	codes := make([]string, n)
	for i := range codes {
		codes[i] = e.wx.Login("wxapp1", "openid-eve", "u-eve")
	}
	subs := make(chan string, n)
	var wg sync.WaitGroup
	for _, c := range codes {
		wg.Go(func() {
			status, _, body := e.login(t, "mp", c)
			if status != 200 {
				t.Errorf("concurrent first login: %d %v", status, body)
				return
			}
			subs <- unverifiedClaims(t, body["access_token"].(string))["sub"].(string)
		})
	}
	wg.Wait()
	close(subs)
	seen := map[string]bool{}
	for s := range subs {
		seen[s] = true
	}
	if len(seen) != 1 || e.count(t, "users") != 1 || e.count(t, "wechat_identities") != 1 {
		t.Fatalf("%d concurrent first logins: %d subjects, %d users", n, len(seen), e.count(t, "users"))
	}
}

func TestWeChatPhoneScope(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxapp1")
	status, _, body := e.login(t, "mp", e.wx.Login("wxapp1", "o-frank", ""),
		"scope", "openid phone", "phone_code", e.wx.PhoneCode("wxapp1", "13800138000"))
	if status != 200 {
		t.Fatalf("login with phone: %d %v", status, body)
	}
	idc := unverifiedClaims(t, body["id_token"].(string))
	if idc["phone_number"] != "13800138000" || idc["phone_number_verified"] != true {
		t.Fatalf("ID token phone claims: %v", idc)
	}
	req, _ := http.NewRequest(http.MethodGet, e.issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+body["access_token"].(string))
	if status, out := do(t, req); status != 200 || !strings.Contains(string(out), `"phone_number":"13800138000"`) {
		t.Fatalf("userinfo: %d %s", status, out)
	}

	// The app's access token is shared and reused; a rejected one is
	// replaced once.
	e.wx.ExpireToken("wxapp1")
	status, _, body = e.login(t, "mp", e.wx.Login("wxapp1", "o-grace", ""),
		"scope", "phone", "phone_code", e.wx.PhoneCode("wxapp1", "13900139000"))
	if status != 200 {
		t.Fatalf("login after token expiry: %d %v", status, body)
	}
	if n := e.wx.TokensIssued("wxapp1"); n != 2 {
		t.Errorf("WeChat access tokens issued: %d, want 2 (first use, then once after expiry)", n)
	}
	status, _, body = e.login(t, "mp", e.wx.Login("wxapp1", "o-heidi", ""),
		"scope", "phone", "phone_code", e.wx.PhoneCode("wxapp1", "13700137000"))
	if status != 200 || e.wx.TokensIssued("wxapp1") != 2 {
		t.Fatalf("third phone login: %d %v, tokens issued %d", status, body, e.wx.TokensIssued("wxapp1"))
	}
	// A phone code from another app is refused, and nothing is written.
	e.wx.AddApp("wxother", "x")
	users := e.count(t, "users")
	status, _, body = e.login(t, "mp", e.wx.Login("wxapp1", "o-ivan", ""),
		"scope", "phone", "phone_code", e.wx.PhoneCode("wxother", "13600136000"))
	if status == 200 || e.count(t, "users") != users {
		t.Fatalf("phone code of another app: %d %v", status, body)
	}
}

func stringify(v any) string {
	var b strings.Builder
	writeAll(&b, v)
	return b.String()
}

func writeAll(b *strings.Builder, v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			b.WriteString(k + "=")
			writeAll(b, e)
			b.WriteString(";")
		}
	case []any:
		for _, e := range x {
			writeAll(b, e)
		}
	case string:
		b.WriteString(x)
	}
}
