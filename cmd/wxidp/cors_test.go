package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

const (
	corsMPOrigin  = "https://mp.example.com"
	corsSPAOrigin = "https://spa.example.com"
	corsEvil      = "https://evil.example.com"
)

// corsDo sends req from origin (none when empty) and returns the answer's
// status, headers and JSON body.
func corsDo(t *testing.T, req *http.Request, origin string) (int, http.Header, map[string]any) {
	t.Helper()
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, resp.Header, body
}

// preflight sends a browser's CORS preflight for method on url.
func preflight(t *testing.T, target, origin, method string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodOptions, target, nil)
	req.Header.Set("Access-Control-Request-Method", method)
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	status, h, _ := corsDo(t, req, origin)
	return status, h
}

// accessControl returns every Access-Control-* header of h.
func accessControl(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k)
		}
	}
	return out
}

// TestCORS: discovery and JWKS are readable from any origin; the token,
// revocation and userinfo answers only from the origins registered on the
// client concerned (set through the CLI and the admin API, refused when
// malformed); the admin listener sends no CORS header; and a preflight
// while the database is down is a 503, never a 500.
func TestCORS(t *testing.T) {
	t.Parallel()
	var proxy *postgrestest.Proxy
	e := newLifecycleEnv(t, func(c *serveConfig) {
		var viaProxy string
		proxy, viaProxy = postgrestest.NewProxy(t, c.DatabaseURL)
		c.DatabaseURL = viaProxy
	})

	// The mini-program gets its origins through the CLI; update keeps
	// every other field.
	if out, err := runClients(t, e.server, "", "update", "mp",
		"--allowed-cors-origin", corsMPOrigin, "--allowed-cors-origin", "http://localhost:5173"); err != nil {
		t.Fatalf("clients update: %v\n%s", err, out)
	}
	_, mp := e.adminJSON(t, http.MethodGet, "/admin/clients/mp", testAdminToken, nil)
	if got, _ := json.Marshal(mp["allowed_cors_origins"]); string(got) != `["`+corsMPOrigin+`","http://localhost:5173"]` ||
		mp["wechat_app_secret_set"] != true {
		t.Fatalf("mp after the CLI update: %v", mp)
	}
	spaSecret := e.registerClient(t, map[string]any{"client_id": "spa", "scope": "read", "allowed_cors_origins": []string{corsSPAOrigin}})

	// Malformed origins are refused and nothing is stored.
	for _, origin := range []string{
		corsSPAOrigin + "/", "http://spa.example.com", "https://SPA.example.com", "https://spa.example.com:443",
		"https://user@spa.example.com", "null", "*", "",
	} {
		status, body := e.adminJSON(t, http.MethodPost, "/admin/clients", testAdminToken, map[string]any{
			"client_id": "bad", "allowed_cors_origins": []string{corsSPAOrigin, origin},
		})
		if status != http.StatusBadRequest || body["error"] != "invalid_client_metadata" {
			t.Errorf("POST with origin %q: %d %v, want 400 invalid_client_metadata", origin, status, body)
		}
		status, body = e.adminJSON(t, http.MethodPut, "/admin/clients/spa", testAdminToken, map[string]any{
			"scope": "read", "allowed_cors_origins": []string{origin},
		})
		if status != http.StatusBadRequest || body["error"] != "invalid_client_metadata" {
			t.Errorf("PUT with origin %q: %d %v, want 400 invalid_client_metadata", origin, status, body)
		}
	}
	if status, _ := e.adminJSON(t, http.MethodGet, "/admin/clients/bad", testAdminToken, nil); status != http.StatusNotFound {
		t.Errorf("a refused client was stored: GET %d", status)
	}
	if _, spa := e.adminJSON(t, http.MethodGet, "/admin/clients/spa", testAdminToken, nil); !slices.Equal(anyStrings(spa["allowed_cors_origins"]), []string{corsSPAOrigin}) {
		t.Errorf("a refused update changed spa: %v", spa)
	}

	// checkACAO asserts the Access-Control-Allow-Origin of an answer.
	checkACAO := func(what string, status int, h http.Header, wantStatus int, want string) {
		t.Helper()
		if status != wantStatus {
			t.Errorf("%s: status %d, want %d", what, status, wantStatus)
		}
		if got := h.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", what, got, want)
		}
		if want != "*" && !slices.Contains(h.Values("Vary"), "Origin") {
			t.Errorf("%s: Vary %q lacks Origin", what, h.Values("Vary"))
		}
	}
	login := func(origin string) (int, http.Header, map[string]any) {
		return corsDo(t, formRequest(e.issuer+"/oauth2/token", url.Values{
			"grant_type": {grants.WeChatCode}, "client_id": {"mp"},
			"code": {e.wx.Login("wxapp1", "o-cors", "")}, "scope": {"openid offline_access"},
		}), origin)
	}
	status, h, tokens := login(corsMPOrigin)
	checkACAO("login from mp's origin", status, h, http.StatusOK, corsMPOrigin)
	at, _ := tokens["access_token"].(string)
	rt, _ := tokens["refresh_token"].(string)
	status, h, _ = login(corsSPAOrigin)
	checkACAO("login from another client's origin", status, h, http.StatusOK, "")
	status, h, _ = login(corsEvil)
	checkACAO("login from an unregistered origin", status, h, http.StatusOK, "")

	credentials := func(origin string) (int, http.Header, map[string]any) {
		r := formRequest(e.issuer+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
		r.SetBasicAuth("spa", spaSecret)
		return corsDo(t, r, origin)
	}
	status, h, _ = credentials(corsSPAOrigin)
	checkACAO("client_credentials from spa's origin", status, h, http.StatusOK, corsSPAOrigin)
	status, h, _ = credentials(corsMPOrigin)
	checkACAO("client_credentials from mp's origin", status, h, http.StatusOK, "")

	// An error answer is readable by the registered origin, so the page
	// learns why it failed.
	status, h, body := corsDo(t, formRequest(e.issuer+"/oauth2/token", url.Values{
		"grant_type": {"refresh_token"}, "client_id": {"mp"}, "refresh_token": {"ory_rt_nope.nope"},
	}), corsMPOrigin)
	checkACAO("failed refresh from mp's origin", status, h, http.StatusBadRequest, corsMPOrigin)
	if body["error"] != "invalid_grant" {
		t.Errorf("failed refresh: %v", body)
	}

	userinfo := func(origin string) (int, http.Header) {
		r, _ := http.NewRequest(http.MethodGet, e.issuer+"/userinfo", nil)
		r.Header.Set("Authorization", "Bearer "+at)
		status, h, _ := corsDo(t, r, origin)
		return status, h
	}
	status, h = userinfo(corsMPOrigin)
	checkACAO("userinfo from the token's client's origin", status, h, http.StatusOK, corsMPOrigin)
	status, h = userinfo(corsSPAOrigin)
	checkACAO("userinfo from another client's origin", status, h, http.StatusOK, "")
	status, h = userinfo(corsEvil)
	checkACAO("userinfo from an unregistered origin", status, h, http.StatusOK, "")

	revoke := func(origin string) (int, http.Header) {
		status, h, _ := corsDo(t, formRequest(e.issuer+"/oauth2/revoke", url.Values{"client_id": {"mp"}, "token": {rt}}), origin)
		return status, h
	}
	status, h = revoke(corsSPAOrigin)
	checkACAO("revoke from another client's origin", status, h, http.StatusOK, "")
	status, h = revoke(corsMPOrigin)
	checkACAO("revoke from mp's origin", status, h, http.StatusOK, corsMPOrigin)

	// Preflights name no client: any registered origin passes them.
	for _, tc := range []struct {
		path, origin, method, want, methods string
	}{
		{"/oauth2/token", corsSPAOrigin, "POST", corsSPAOrigin, "POST"},
		{"/oauth2/token", corsMPOrigin, "POST", corsMPOrigin, "POST"},
		{"/oauth2/revoke", corsMPOrigin, "POST", corsMPOrigin, "POST"},
		{"/userinfo", corsMPOrigin, "GET", corsMPOrigin, "GET, POST"},
		{"/oauth2/token", corsEvil, "POST", "", ""},
		{"/userinfo", corsEvil, "GET", "", ""},
		{"/.well-known/jwks.json", corsEvil, "GET", "*", "GET"},
		{"/.well-known/openid-configuration", corsEvil, "GET", "*", "GET"},
	} {
		status, h := preflight(t, e.issuer+tc.path, tc.origin, tc.method)
		what := "preflight " + tc.path + " from " + tc.origin
		if status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != tc.want ||
			h.Get("Access-Control-Allow-Methods") != tc.methods {
			t.Errorf("%s: %d, Allow-Origin %q, Allow-Methods %q; want 204, %q, %q", what, status,
				h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Methods"), tc.want, tc.methods)
		}
		if tc.want != "" && tc.want != "*" && (!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") || h.Get("Access-Control-Max-Age") == "") {
			t.Errorf("%s: Allow-Headers %q, Max-Age %q", what, h.Get("Access-Control-Allow-Headers"), h.Get("Access-Control-Max-Age"))
		}
	}

	// Discovery and JWKS: any origin, HEAD included.
	for _, path := range []string{"/.well-known/jwks.json", "/.well-known/openid-configuration"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			r, _ := http.NewRequest(method, e.issuer+path, nil)
			status, h, _ := corsDo(t, r, corsEvil)
			if status != http.StatusOK || h.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s %s: %d, Access-Control-Allow-Origin %q; want 200, *", method, path, status, h.Get("Access-Control-Allow-Origin"))
			}
		}
	}

	// The admin listener: no CORS header, whatever the origin, so no
	// preflight passes (echo answers OPTIONS there 204 with Allow, as it
	// always has; without Access-Control-Allow-Origin the browser stops).
	r, _ := http.NewRequest(http.MethodGet, e.admin+"/admin/clients", nil)
	r.Header.Set("Authorization", "Bearer "+testAdminToken)
	if status, h, _ := corsDo(t, r, corsSPAOrigin); status != http.StatusOK || len(accessControl(h)) != 0 {
		t.Errorf("admin GET from a registered origin: %d, CORS headers %q", status, accessControl(h))
	}
	for _, path := range []string{"/admin/clients", "/admin/clients/spa", "/admin/keys", "/metrics"} {
		if status, h := preflight(t, e.admin+path, corsSPAOrigin, "GET"); len(accessControl(h)) != 0 {
			t.Errorf("admin preflight %s: %d, CORS headers %q; want none", path, status, accessControl(h))
		}
	}

	// Database down: the origins loaded before answer from memory (never a
	// 500, no wait for the database); a process that has not loaded them
	// yet answers 503 (web's TestCORSPreflightDatabaseDown). The public
	// documents still answer.
	proxy.Down()
	status, h = preflight(t, e.issuer+"/oauth2/token", corsSPAOrigin, "POST")
	if status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != corsSPAOrigin {
		t.Errorf("token preflight with the database down: %d (Allow-Origin %q), want 204 from the loaded origins",
			status, h.Get("Access-Control-Allow-Origin"))
	}
	if status, h := preflight(t, e.issuer+"/.well-known/jwks.json", corsSPAOrigin, "GET"); status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("JWKS preflight with the database down: %d, %q", status, h.Get("Access-Control-Allow-Origin"))
	}
	proxy.Up()
}

func anyStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, s := range list {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}
