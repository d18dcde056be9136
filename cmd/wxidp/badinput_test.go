package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// leaks are strings no error response may contain.
var leaks = []string{"goroutine", "panic", "pgx", "SQLSTATE", "sql:", ".go:", "hmac-sha256$"}

func checkNoLeak(t testing.TB, what string, body string) {
	t.Helper()
	for _, l := range leaks {
		if strings.Contains(body, l) {
			t.Errorf("%s: response leaks %q: %s", what, l, body)
		}
	}
}

func TestTokenEndpointRejectsBadInput(t *testing.T) {
	t.Parallel()
	srv := startServer(t, memoryConfig())
	secret := srv.registerClient(t, map[string]any{
		"client_id": "svc", "scope": "read write", "audience": []string{"https://api.example.com"},
	})
	postSecret := srv.registerClient(t, map[string]any{
		"client_id": "poster", "token_endpoint_auth_method": "client_secret_post", "scope": "read",
	})
	cc := url.Values{"grant_type": {"client_credentials"}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range cc {
			v[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	cases := []struct {
		name       string
		user, pass string
		form       url.Values
		status     int
		code       string
	}{
		{"unknown client", "nobody", secret, cc, 401, "invalid_client"},
		{"wrong secret", "svc", secret + "x", cc, 401, "invalid_client"},
		{"no credentials", "", "", cc, 400, "invalid_request"},
		{"post client using basic", "poster", postSecret, cc, 401, "invalid_client"},
		{"unsupported grant", "svc", secret, with("grant_type", "password", "username", "a", "password", "b"), 400, "unsupported_grant_type"},
		{"unknown grant", "svc", secret, with("grant_type", "urn:example:nope"), 400, "unsupported_grant_type"},
		{"missing grant_type", "svc", secret, url.Values{}, 400, "invalid_request"},
		{"scope outside registration", "svc", secret, with("scope", "read admin"), 400, "invalid_scope"},
		{"audience outside registration", "svc", secret, with("audience", "https://evil.example.com"), 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, h, body := srv.postToken(t, tc.user, tc.pass, tc.form)
			if status != tc.status || body["error"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, body, tc.status, tc.code)
			}
			if status == 401 && h.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if h.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", h.Get("Cache-Control"))
			}
			checkNoLeak(t, tc.name, fmt.Sprint(body))
		})
	}

	t.Run("client_secret_post", func(t *testing.T) {
		t.Parallel()
		status, _, body := srv.postToken(t, "", "", with("client_id", "poster", "client_secret", postSecret))
		if status != 200 || body["access_token"] == nil {
			t.Fatalf("got %d %v", status, body)
		}
	})
	t.Run("oversized body", func(t *testing.T) {
		t.Parallel()
		status, _, _ := srv.postToken(t, "svc", secret, with("scope", strings.Repeat("a", 70<<10)))
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d, want 413", status)
		}
	})
	t.Run("wrong method", func(t *testing.T) {
		t.Parallel()
		resp, err := http.Get(srv.issuer + "/oauth2/token")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("got %d, want 405", resp.StatusCode)
		}
	})
	t.Run("concurrent requests", func(t *testing.T) {
		t.Parallel()
		const n = 24
		var wg sync.WaitGroup
		jtis := make(chan string, n)
		for range n {
			wg.Go(func() {
				status, _, body := srv.postToken(t, "svc", secret, cc)
				if status != 200 {
					t.Errorf("concurrent request: %d %v", status, body)
					return
				}
				jtis <- unverifiedClaims(t, body["access_token"].(string))["jti"].(string)
			})
		}
		wg.Wait()
		close(jtis)
		seen := map[string]bool{}
		for j := range jtis {
			if seen[j] {
				t.Error("duplicate jti")
			}
			seen[j] = true
		}
	})
}

func TestAdminAPIRejectsBadInput(t *testing.T) {
	t.Parallel()
	srv := startServer(t, memoryConfig())
	srv.registerClient(t, map[string]any{"client_id": "taken"})

	cases := []struct {
		name, method, path, token, body string
		status                          int
		mention                         string
	}{
		{"no token", "GET", "/admin/clients", "", "", 401, ""},
		{"wrong token", "GET", "/admin/clients", "nope", "", 401, ""},
		{"wrong token same length", "GET", "/admin/clients", strings.Repeat("x", len(testAdminToken)), "", 401, ""},
		{"syntax error", "POST", "/admin/clients", testAdminToken, `{"client_name":`, 400, ""},
		{"wrong type", "POST", "/admin/clients", testAdminToken, `{"grant_types":"client_credentials"}`, 400, "grant_types"},
		{"unknown field", "POST", "/admin/clients", testAdminToken, `{"client_nmae":"x"}`, 400, "client_nmae"},
		{"two objects", "POST", "/admin/clients", testAdminToken, `{} {}`, 400, ""},
		{"empty body", "POST", "/admin/clients", testAdminToken, ``, 400, ""},
		{"duplicate id", "POST", "/admin/clients", testAdminToken, `{"client_id":"taken"}`, 409, ""},
		{"short secret", "POST", "/admin/clients", testAdminToken, `{"client_secret":"tooshort"}`, 400, "client_secret"},
		{"unsupported grant", "POST", "/admin/clients", testAdminToken, `{"grant_types":["implicit"]}`, 400, "grant_types"},
		{"bad auth method", "POST", "/admin/clients", testAdminToken, `{"token_endpoint_auth_method":"private_key_jwt"}`, 400, "token_endpoint_auth_method"},
		{"bad client id", "POST", "/admin/clients", testAdminToken, `{"client_id":"a b"}`, 400, "client_id"},
		{"bad scope", "POST", "/admin/clients", testAdminToken, `{"scope":"read \"quoted\""}`, 400, "scope"},
		{"oversized", "POST", "/admin/clients", testAdminToken, `{"client_name":"` + strings.Repeat("a", 70<<10) + `"}`, 413, ""},
		{"get unknown", "GET", "/admin/clients/nope", testAdminToken, "", 404, ""},
		{"put unknown", "PUT", "/admin/clients/nope", testAdminToken, `{}`, 404, ""},
		{"delete unknown", "DELETE", "/admin/clients/nope", testAdminToken, "", 404, ""},
		{"change id", "PUT", "/admin/clients/taken", testAdminToken, `{"client_id":"other"}`, 400, "client_id"},
		{"wrong method", "PATCH", "/admin/clients/taken", testAdminToken, `{}`, 405, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var body []byte
			if tc.body != "" || tc.method == "POST" {
				body = []byte(tc.body)
			}
			status, out := srv.adminRaw(t, tc.method, tc.path, tc.token, "application/json", body)
			if status != tc.status {
				t.Fatalf("got %d %s, want %d", status, out, tc.status)
			}
			if !bytes.Contains(out, []byte(`"error"`)) {
				t.Errorf("error body not in RFC 6749 shape: %s", out)
			}
			if tc.mention != "" && !bytes.Contains(out, []byte(tc.mention)) {
				t.Errorf("error does not name %q: %s", tc.mention, out)
			}
			checkNoLeak(t, tc.name, string(out))
		})
	}
	t.Run("wrong content type", func(t *testing.T) {
		t.Parallel()
		status, _ := srv.adminRaw(t, "POST", "/admin/clients", testAdminToken, "text/plain", []byte(`{}`))
		if status != http.StatusUnsupportedMediaType {
			t.Fatalf("got %d", status)
		}
	})
	// Nothing above changed the registry.
	status, list := srv.adminJSON(t, "GET", "/admin/clients", testAdminToken, nil)
	if status != 200 || len(list["clients"].([]any)) != 1 {
		t.Fatalf("failed requests changed the registry: %v", list)
	}
}

func TestAdminClientLifecycle(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	own := strings.Repeat("k", 40)
	status, created := srv.adminJSON(t, "POST", "/admin/clients", testAdminToken, map[string]any{
		"client_name": "Svc", "scope": "read", "client_secret": own,
	})
	if status != 201 || created["client_secret"] != own || created["client_id"] == "" {
		t.Fatalf("create: %d %v", status, created)
	}
	id := created["client_id"].(string)
	status, got := srv.adminJSON(t, "GET", "/admin/clients/"+id, testAdminToken, nil)
	if status != 200 || got["client_secret"] != nil || got["client_name"] != "Svc" {
		t.Fatalf("get: %d %v", status, got)
	}
	if _, _, body := srv.postToken(t, id, own, url.Values{"grant_type": {"client_credentials"}}); body["access_token"] == nil {
		t.Fatalf("operator-supplied secret does not authenticate: %v", body)
	}

	status, upd := srv.adminJSON(t, "PUT", "/admin/clients/"+id, testAdminToken, map[string]any{
		"client_name": "Renamed", "scope": "read write",
	})
	if status != 200 || upd["client_name"] != "Renamed" || upd["scope"] != "read write" {
		t.Fatalf("update: %d %v", status, upd)
	}
	// The secret survives an update that does not set one.
	if status, _, body := srv.postToken(t, id, own, url.Values{"grant_type": {"client_credentials"}, "scope": {"write"}}); status != 200 {
		t.Fatalf("after update: %d %v", status, body)
	}

	// The CLI drives the same API.
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"clients", "update", id, "--endpoint", srv.admin, "--token", testAdminToken, "--name", "Via CLI"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"Via CLI"`) || !strings.Contains(out.String(), `"read write"`) {
		t.Fatalf("CLI update lost fields: %s", out.String())
	}
	for _, args := range [][]string{{"list"}, {"get", id}, {"delete", id}} {
		root := newRootCmd()
		out.Reset()
		root.SetOut(&out)
		root.SetArgs(append(append([]string{"clients"}, args...), "--endpoint", srv.admin, "--token", testAdminToken))
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("clients %v: %v", args, err)
		}
	}
	if status, _ := srv.adminJSON(t, "GET", "/admin/clients/"+id, testAdminToken, nil); status != 404 {
		t.Fatalf("deleted client still there: %d", status)
	}
	if status, _, _ := srv.postToken(t, id, own, url.Values{"grant_type": {"client_credentials"}}); status != 401 {
		t.Fatalf("deleted client still gets tokens: %d", status)
	}
	root = newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"clients", "get", id, "--endpoint", srv.admin, "--token", testAdminToken})
	if err := root.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("CLI get of a deleted client: %v", err)
	}
}
