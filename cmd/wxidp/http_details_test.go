package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// send makes one request with an optional bearer Authorization (auth is the
// whole header value) and returns the response with its body read.
func send(t *testing.T, method, target, auth string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// ccToken gets a client_credentials access token from srv.
func ccToken(t *testing.T, srv *server, id, secret, scope string) string {
	t.Helper()
	status, _, tok := srv.postToken(t, id, secret, url.Values{"grant_type": {"client_credentials"}, "scope": {scope}})
	if status != 200 {
		t.Fatalf("client_credentials: %d %v", status, tok)
	}
	return tok["access_token"].(string)
}

// TestHeadOnGetRoutes: HEAD answers like GET without the body (RFC 9110
// §9.3.2), on both listeners.
func TestHeadOnGetRoutes(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	secret := srv.registerClient(t, map[string]any{"client_id": "svc", "scope": "openid"})
	at := ccToken(t, srv, "svc", secret, "openid")
	admin := "Bearer " + testAdminToken
	for _, r := range []struct{ target, auth string }{
		{srv.issuer + "/healthz", ""},
		{srv.issuer + "/readyz", ""},
		{srv.issuer + "/.well-known/openid-configuration", ""},
		{srv.issuer + "/.well-known/jwks.json", ""},
		{srv.issuer + "/userinfo", "Bearer " + at},
		{srv.admin + "/admin/clients", admin},
		{srv.admin + "/admin/clients/svc", admin},
		{srv.admin + "/admin/keys", admin},
		{srv.admin + "/metrics", admin},
	} {
		get, getBody := send(t, http.MethodGet, r.target, r.auth)
		head, headBody := send(t, http.MethodHead, r.target, r.auth)
		if get.StatusCode != 200 || head.StatusCode != 200 || len(headBody) != 0 {
			t.Errorf("%s: GET %d, HEAD %d with %d body bytes", r.target, get.StatusCode, head.StatusCode, len(headBody))
			continue
		}
		if head.Header.Get("Content-Type") != get.Header.Get("Content-Type") {
			t.Errorf("%s: HEAD Content-Type %q, GET %q", r.target, head.Header.Get("Content-Type"), get.Header.Get("Content-Type"))
		}
		if !strings.HasSuffix(r.target, "/metrics") && head.ContentLength != int64(len(getBody)) {
			t.Errorf("%s: HEAD Content-Length %d, GET body %d bytes", r.target, head.ContentLength, len(getBody))
		}
	}
	// HEAD is still refused where GET is, and is no way around auth.
	if resp, _ := send(t, http.MethodHead, srv.issuer+"/oauth2/token", ""); resp.StatusCode != 405 {
		t.Errorf("HEAD /oauth2/token: %d, want 405", resp.StatusCode)
	}
	if resp, _ := send(t, http.MethodHead, srv.admin+"/admin/clients", ""); resp.StatusCode != 401 {
		t.Errorf("HEAD /admin/clients without token: %d, want 401", resp.StatusCode)
	}
}

// TestBearerSchemeIsCaseInsensitive (RFC 7235 §2.1), at /userinfo and at
// the admin listener.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	secret := srv.registerClient(t, map[string]any{"client_id": "svc", "scope": "openid"})
	at := ccToken(t, srv, "svc", secret, "openid")
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		if resp, body := send(t, http.MethodGet, srv.issuer+"/userinfo", scheme+" "+at); resp.StatusCode != 200 {
			t.Errorf("userinfo with %q: %d %s", scheme, resp.StatusCode, body)
		}
		if resp, body := send(t, http.MethodGet, srv.admin+"/admin/clients", scheme+" "+testAdminToken); resp.StatusCode != 200 {
			t.Errorf("admin with %q: %d %s", scheme, resp.StatusCode, body)
		}
	}
	for _, auth := range []string{"Basic " + testAdminToken, "Bearer", "Bearer ", "Bearer" + testAdminToken, "Bearer " + testAdminToken + " x"} {
		if resp, _ := send(t, http.MethodGet, srv.admin+"/admin/clients", auth); resp.StatusCode != 401 {
			t.Errorf("admin with %q: %d, want 401", auth, resp.StatusCode)
		}
	}
}

// TestRepeatedParameters: a repeated parameter, in the body, the query or
// both, is invalid_request (RFC 6749 §3.1) at every OAuth endpoint, and the
// request has no effect.
func TestRepeatedParameters(t *testing.T) {
	t.Parallel()
	e := newLifecycleEnv(t)
	tok := e.loginTokens(t, "o-repeat")
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	code := e.wx.Login("wxapp1", "o-repeat-2", "")
	wechatCalls := e.wx.Calls(wechattest.PathCode2Session)
	accessTokens := e.count(t, "oauth2_access_tokens")
	wc := grants.WeChatCode
	cases := []struct {
		name, path  string
		query, form url.Values
		user, pass  string
		param       string
	}{
		{"token: code twice", "/oauth2/token", nil,
			url.Values{"grant_type": {wc}, "client_id": {"mp"}, "code": {code, code}}, "", "", "code"},
		{"token: client_id in query and body", "/oauth2/token", url.Values{"client_id": {"mp"}},
			url.Values{"grant_type": {wc}, "client_id": {"mp"}, "code": {code}}, "", "", "client_id"},
		{"token: grant_type twice", "/oauth2/token", nil,
			url.Values{"grant_type": {"client_credentials", "client_credentials"}}, "rs", e.rsSecret, "grant_type"},
		{"token: scope twice", "/oauth2/token", nil,
			url.Values{"grant_type": {"client_credentials"}, "scope": {"read", "introspect"}}, "rs", e.rsSecret, "scope"},
		{"token: refresh_token twice", "/oauth2/token", nil,
			url.Values{"grant_type": {"refresh_token"}, "client_id": {"mp"}, "refresh_token": {rt, rt}}, "", "", "refresh_token"},
		{"revoke: token twice", "/oauth2/revoke", nil,
			url.Values{"token": {at, rt}, "client_id": {"mp"}}, "", "", "token"},
		{"revoke: client_id twice", "/oauth2/revoke", nil,
			url.Values{"token": {at}, "client_id": {"mp", "mp"}}, "", "", "client_id"},
		{"revoke: token in query and body", "/oauth2/revoke", url.Values{"token": {rt}},
			url.Values{"token": {at}, "client_id": {"mp"}}, "", "", "token"},
		{"introspect: token twice", "/oauth2/introspect", nil,
			url.Values{"token": {at, rt}}, "rs", e.rsSecret, "token"},
		{"introspect: token_type_hint twice", "/oauth2/introspect", nil,
			url.Values{"token": {at}, "token_type_hint": {"access_token", "refresh_token"}}, "rs", e.rsSecret, "token_type_hint"},
	}
	for _, tc := range cases {
		status, h, body := e.postForm(t, tc.path, tc.query, tc.form, tc.user, tc.pass)
		desc, _ := body["error_description"].(string)
		if status != 400 || body["error"] != "invalid_request" || !strings.Contains(desc, "'"+tc.param+"'") {
			t.Errorf("%s: %d %v, want 400 invalid_request naming %q", tc.name, status, body, tc.param)
		}
		if !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("%s: Content-Type %q", tc.name, h.Get("Content-Type"))
		}
		if _, ok := body["active"]; ok || body["access_token"] != nil {
			t.Errorf("%s: answered %v", tc.name, body)
		}
	}
	// Nothing happened: no WeChat call, no token, nothing revoked or rotated.
	if n := e.wx.Calls(wechattest.PathCode2Session); n != wechatCalls {
		t.Errorf("refused requests made %d WeChat calls", n-wechatCalls)
	}
	if n := e.count(t, "oauth2_access_tokens"); n != accessTokens {
		t.Errorf("refused requests issued %d access tokens", n-accessTokens)
	}
	if !e.active(t, at) || !e.active(t, rt) {
		t.Error("a refused request revoked or rotated the grant")
	}
	if status, _, body := e.login(t, "mp", code); status != 200 {
		t.Errorf("the code of a refused request no longer works: %d %v", status, body)
	}
}

// TestAdminJSONIsStrict: field names are exact, once each, and values hold
// neither NUL nor invalid UTF-8; a refused body creates or changes nothing.
func TestAdminJSONIsStrict(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	srv.registerClient(t, map[string]any{"client_id": "keep", "client_name": "Keep"})
	// ID stands for the client_id: a fresh one to create, "keep" to update.
	cases := []struct{ name, body, want string }{
		{"field name case", `{"client_id":"ID","Client_Name":"x"}`, `"Client_Name"`},
		{"known field in capitals", `{"CLIENT_ID":"ID"}`, `"CLIENT_ID"`},
		{"duplicate field", `{"client_id":"ID","client_id":"ID"}`, `"client_id" appears more than once`},
		{"NUL", `{"client_id":"ID","client_name":"a\u0000b"}`, `"client_name" contains a NUL`},
		{"NUL in a list", `{"client_id":"ID","audience":["https://a.example/\u0000"]}`, `"audience[0]" contains a NUL`},
		{"invalid UTF-8", "{\"client_id\":\"ID\",\"client_name\":\"\xff\xfe\"}", `"client_name" is not valid UTF-8`},
	}
	for i, tc := range cases {
		for _, m := range []struct{ method, path, id string }{
			{"POST", "/admin/clients", fmt.Sprintf("c%d", i)},
			{"PUT", "/admin/clients/keep", "keep"},
		} {
			body := strings.ReplaceAll(tc.body, `"ID"`, `"`+m.id+`"`)
			status, raw := srv.adminRaw(t, m.method, m.path, testAdminToken, "application/json", []byte(body))
			var answer map[string]any
			_ = json.Unmarshal(raw, &answer)
			desc, _ := answer["error_description"].(string)
			if status != 400 || answer["error"] != "invalid_request" || !strings.Contains(desc, tc.want) {
				t.Errorf("%s %s: %d %s, want 400 naming %s", m.method, tc.name, status, raw, tc.want)
			}
		}
	}
	status, list := srv.adminJSON(t, "GET", "/admin/clients", testAdminToken, nil)
	clients, _ := list["clients"].([]any)
	if status != 200 || len(clients) != 1 {
		t.Fatalf("clients after refused bodies: %d %v", status, list)
	}
	if c := clients[0].(map[string]any); c["client_id"] != "keep" || c["client_name"] != "Keep" {
		t.Errorf("a refused update changed the client: %v", c)
	}
}

// TestClientGoneIsLoggedAs499: a client hanging up while its login waits
// on WeChat is logged as 499 at INFO, not as an ERROR server_error.
func TestClientGoneIsLoggedAs499(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxapp1")
	e.wx.SetDelay(2 * time.Second) // far longer than the steps below
	calls := e.wx.Calls(wechattest.PathCode2Session)
	form := url.Values{"grant_type": {grants.WeChatCode}, "client_id": {"mp"}, "code": {e.wx.Login("wxapp1", "o-gone", "")}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.issuer+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Request-Id", "client-gone-1")
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	eventually(t, "the login to reach WeChat", func() bool { return e.wx.Calls(wechattest.PathCode2Session) > calls })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("request: %v, want canceled", err)
	}
	var line map[string]any
	eventually(t, "the access-log line", func() bool {
		for _, l := range strings.Split(e.logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" && m["request_id"] == "client-gone-1" {
				line = m
				return true
			}
		}
		return false
	})
	if line["status"] != float64(499) || line["level"] != "INFO" {
		t.Errorf("access log %v, want status 499 at INFO", line)
	}
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, `"level":"ERROR"`) {
			t.Errorf("a departed client was logged as an error: %s", l)
		}
	}
}

// eventually polls cond until it holds, failing after a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
