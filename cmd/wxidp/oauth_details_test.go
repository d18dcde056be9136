package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// TestRequestIDHeader: a client's X-Request-Id is kept only when short and
// plain; anything else is replaced, in the answer and in the log.
func TestRequestIDHeader(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	safe := regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	for _, tc := range []struct {
		sent string
		kept bool
	}{
		{"lb-7f3a.req_42", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"two words", false},
		{`"},"level":"ERROR`, false},
		{"<script>", false},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.issuer+"/healthz", nil)
		req.Header.Set("X-Request-Id", tc.sent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("X-Request-Id")
		if tc.kept != (got == tc.sent) || !safe.MatchString(got) {
			t.Errorf("sent %q, answered %q", tc.sent, got)
		}
		if !strings.Contains(srv.logs.String(), `"request_id":"`+got+`"`) {
			t.Errorf("request ID %q not in the access log", got)
		}
	}
	if strings.Contains(srv.logs.String(), "two words") || strings.Contains(srv.logs.String(), strings.Repeat("x", 65)) {
		t.Error("a refused request ID reached the log")
	}
}

// TestRetryAfterOn503And429: every 503 and 429 says when to retry.
func TestRetryAfterOn503And429(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxapp1")
	check := func(name string, wantStatus int) {
		t.Helper()
		status, h, body := e.login(t, "mp", e.wx.Login("wxapp1", "o-"+strings.ReplaceAll(name, " ", "-"), ""))
		if status != wantStatus || body["error"] != "temporarily_unavailable" {
			t.Fatalf("%s: %d %v, want %d temporarily_unavailable", name, status, body, wantStatus)
		}
		if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s <= 0 {
			t.Errorf("%s: Retry-After %q", name, h.Get("Retry-After"))
		}
	}
	e.wx.FailNext(wechattest.PathCode2Session, -1) // busy, and busy again on the retry
	e.wx.FailNext(wechattest.PathCode2Session, -1)
	check("wechat busy", http.StatusServiceUnavailable)
	e.wx.FailNext(wechattest.PathCode2Session, 45011)
	check("wechat quota", http.StatusTooManyRequests)
	e.wx.Close()
	check("wechat unreachable", http.StatusServiceUnavailable)
}

// TestDiscoveryListsWhatIsServed: the code response type with the
// authorization endpoint that serves it, and every listed claim is really
// emitted.
func TestDiscoveryListsWhatIsServed(t *testing.T) {
	t.Parallel()
	e := newLifecycleEnv(t)
	status, raw := do(t, mustRequest(t, http.MethodGet, e.issuer+"/.well-known/openid-configuration"))
	var disc map[string]any
	if err := json.Unmarshal(raw, &disc); status != 200 || err != nil {
		t.Fatalf("discovery: %d %s", status, raw)
	}
	if rt, ok := disc["response_types_supported"].([]any); !ok || len(rt) != 1 || rt[0] != "code" {
		t.Errorf("response_types_supported %v, want [code]", disc["response_types_supported"])
	}
	if disc["authorization_endpoint"] != e.issuer+"/oauth2/auth" {
		t.Errorf("authorization_endpoint %v", disc["authorization_endpoint"])
	}

	// Every claim listed appears in the ID token or at userinfo.
	status, _, tok := e.login(t, "mp", e.wx.Login("wxapp1", "o-disc", ""),
		"scope", "openid phone", "phone_code", e.wx.PhoneCode("wxapp1", "13800138000"))
	if status != 200 {
		t.Fatalf("login: %d %v", status, tok)
	}
	seen := unverifiedClaims(t, tok["id_token"].(string))
	req := mustRequest(t, http.MethodGet, e.issuer+"/userinfo")
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	_, info := decodeDo(t, req)
	for k, v := range info {
		seen[k] = v
	}
	// nonce comes only with the authorization code flow (TestScanLogin
	// checks it there).
	seen["nonce"] = true
	for _, c := range disc["claims_supported"].([]any) {
		if _, ok := seen[c.(string)]; !ok {
			t.Errorf("claim %q is listed but never emitted", c)
		}
	}
	// Revocation method "none" is listed: a public client revokes by client_id.
	at := tok["access_token"].(string)
	if status := e.revoke(t, url.Values{"token": {at}, "client_id": {"mp"}}, "", ""); status != 200 || e.active(t, at) {
		t.Errorf("revocation with auth method none: %d", status)
	}
}

// TestForeignIssuerTokens: a token that another issuer sharing our keys and
// database minted is refused at /userinfo, and introspection names its
// real issuer.
func TestForeignIssuerTokens(t *testing.T) {
	t.Parallel()
	dsn := migratedDB(t)
	a := startServer(t, testConfig(dsn))
	b := startServer(t, testConfig(dsn)) // its own issuer URL; same keys, secrets, database
	secret := a.registerClient(t, map[string]any{"client_id": "svc", "scope": "openid introspect"})
	foreign := ccToken(t, b, "svc", secret, "openid")
	if iss := unverifiedClaims(t, foreign)["iss"]; iss != b.issuer {
		t.Fatalf("B minted iss %v", iss)
	}
	own := ccToken(t, a, "svc", secret, "openid")

	for _, tc := range []struct {
		srv   *server
		token string
		want  int
	}{{a, own, 200}, {b, foreign, 200}, {a, foreign, 401}} {
		resp, body := send(t, http.MethodGet, tc.srv.issuer+"/userinfo", "Bearer "+tc.token)
		if resp.StatusCode != tc.want {
			t.Errorf("userinfo at %s: %d %s, want %d", tc.srv.issuer, resp.StatusCode, body, tc.want)
		}
		if tc.want == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("foreign token: WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
		}
	}

	for _, tc := range []struct{ token, iss string }{{own, a.issuer}, {foreign, b.issuer}} {
		status, _, body := a.postForm(t, "/oauth2/introspect", nil, url.Values{"token": {tc.token}}, "svc", secret)
		if status != 200 || body["active"] != true || body["iss"] != tc.iss {
			t.Errorf("introspection at A: %d %v, want active with iss %s", status, body, tc.iss)
		}
	}
}

func mustRequest(t *testing.T, method, target string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
