package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// TestStorageOutageAnswers: while the database is gone or hung, every
// endpoint that needs it answers 503 temporarily_unavailable with
// Retry-After in bounded time — never a credential verdict (401
// invalid_client, invalid_token, active:false, a revocation 200) — and when
// it is back, everything the outage touched works as before: the refresh
// token was not rotated, the token was not revoked, the WeChat code was not
// spent.
func TestStorageOutageAnswers(t *testing.T) {
	t.Parallel()
	const dbTimeout = 500 * time.Millisecond
	var proxy *postgrestest.Proxy
	var viaProxy string
	e := newLifecycleEnv(t, func(c *serveConfig) {
		proxy, viaProxy = postgrestest.NewProxy(t, c.DatabaseURL)
		c.DatabaseURL, c.DatabaseTimeout = viaProxy, dbTimeout
	})
	tokens := e.loginTokens(t, "o-outage")
	at, rt := tokens["access_token"].(string), tokens["refresh_token"].(string)
	code := e.wx.Login("wxapp1", "o-later", "")
	// The session_key vault, through a client that may ask for it.
	if status, body := e.adminJSON(t, "POST", "/admin/clients", testAdminToken, map[string]any{
		"client_id": "mp-vault", "token_endpoint_auth_method": "none", "scope": "openid wechat_data",
		"wechat_appid": "wxapp1", "wechat_app_secret": "secret-of-wxapp1",
	}); status != http.StatusCreated {
		t.Fatalf("register the vault client: %d %v", status, body)
	}
	_, _, vault := e.login(t, "mp-vault", e.wx.Login("wxapp1", "o-vault", ""), "scope", "openid wechat_data")
	vaultToken, _ := vault["access_token"].(string)
	renewCode := e.wx.Login("wxapp1", "o-vault", "")
	vaultRequest := func(path string, form url.Values) *http.Request {
		r := formRequest(e.issuer+path, form)
		r.Header.Set("Authorization", "Bearer "+vaultToken)
		return r
	}

	// The account endpoints and the admin users API, for a user with a
	// profile who logged in just now (so deletion would be allowed).
	_, _, acct := e.login(t, "mp", e.wx.Login("wxapp1", "o-account", ""), "scope", "openid profile")
	acctToken, _ := acct["access_token"].(string)
	acctSub, _ := unverifiedClaims(t, acctToken)["sub"].(string)
	accountRequest := func(method, body string) *http.Request {
		r, _ := http.NewRequest(method, e.issuer+"/account", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+acctToken)
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		return r
	}
	adminRequest := func(method, path string) *http.Request {
		r, _ := http.NewRequest(method, e.admin+path, nil)
		r.Header.Set("Authorization", "Bearer "+testAdminToken)
		return r
	}

	requests := map[string]func() *http.Request{
		"account profile": func() *http.Request { return accountRequest(http.MethodPatch, `{"nickname":"during the outage"}`) },
		"account delete":  func() *http.Request { return accountRequest(http.MethodDelete, "") },
		"admin users":     func() *http.Request { return adminRequest(http.MethodGet, "/admin/users?openid=o-account") },
		"admin user":      func() *http.Request { return adminRequest(http.MethodGet, "/admin/users/"+acctSub) },
		"admin disable":   func() *http.Request { return adminRequest(http.MethodPost, "/admin/users/"+acctSub+"/disable") },
		"admin erase":     func() *http.Request { return adminRequest(http.MethodDelete, "/admin/users/"+acctSub) },
		"client_credentials": func() *http.Request {
			r := formRequest(e.issuer+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
			r.SetBasicAuth("other", e.otherSecret)
			return r
		},
		"refresh": func() *http.Request {
			return formRequest(e.issuer+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"mp"}, "refresh_token": {rt}})
		},
		"wechat-code": func() *http.Request {
			return formRequest(e.issuer+"/oauth2/token", url.Values{"grant_type": {"urn:wxidp:params:oauth:grant-type:wechat-code"}, "client_id": {"mp"}, "code": {code}})
		},
		"introspect": func() *http.Request {
			r := formRequest(e.issuer+"/oauth2/introspect", url.Values{"token": {at}})
			r.SetBasicAuth("rs", e.rsSecret)
			return r
		},
		"revoke": func() *http.Request {
			return formRequest(e.issuer+"/oauth2/revoke", url.Values{"token": {rt}, "client_id": {"mp"}})
		},
		"userinfo": func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, e.issuer+"/userinfo", nil)
			r.Header.Set("Authorization", "Bearer "+at)
			return r
		},
		"vault decrypt": func() *http.Request {
			return vaultRequest("/wechat/decrypt", url.Values{"encryptedData": {"AAAAAAAAAAAAAAAAAAAAAA=="}, "iv": {"AAAAAAAAAAAAAAAAAAAAAA=="}})
		},
		"vault session": func() *http.Request {
			return vaultRequest("/wechat/session", url.Values{"code": {renewCode}})
		},
		"admin": func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, e.admin+"/admin/clients", nil)
			r.Header.Set("Authorization", "Bearer "+testAdminToken)
			return r
		},
		"readyz": func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, e.issuer+"/readyz", nil)
			return r
		},
	}

	for _, outage := range []struct {
		name  string
		start func()
	}{{"down", proxy.Down}, {"hung", proxy.Hang}} {
		outage.start()
		for name, req := range requests {
			start := time.Now()
			resp, err := http.DefaultClient.Do(req())
			if err != nil {
				t.Fatalf("%s: %s: %v", outage.name, name, err)
			}
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Errorf("%s: %s: %d (Retry-After %q) %v, want 503 with Retry-After",
					outage.name, name, resp.StatusCode, resp.Header.Get("Retry-After"), body)
			}
			if name != "readyz" && body["error"] != "temporarily_unavailable" {
				t.Errorf("%s: %s: error %v, want temporarily_unavailable", outage.name, name, body)
			}
			// /readyz answers within 2 s whatever the database does; the
			// rest within the database deadline, plus the time pgx takes to
			// give up a hung connection, plus slack for -race.
			limit := 2 * time.Second
			if name != "readyz" {
				limit = 3*dbTimeout + 2*time.Second
			}
			if took > limit {
				t.Errorf("%s: %s took %v, want <= %v", outage.name, name, took, limit)
			}
		}
		if _, err := runClients(t, e.server, "", "list"); !errors.Is(err, storage.ErrUnavailable) || exitCode(err) != exitTempFail {
			t.Errorf("%s: wxidp clients list: %v (exit %d), want the database unavailable (exit %d)", outage.name, err, exitCode(err), exitTempFail)
		}
		if outage.name == "down" { // a hung database holds migrate's lock wait: not bounded by this timeout
			if err := runMigrate(context.Background(), viaProxy, "status", io.Discard); !errors.Is(err, storage.ErrUnavailable) {
				t.Errorf("%s: wxidp migrate status: %v, want the database unavailable", outage.name, err)
			}
		}
		proxy.Up()
		waitHealthy(t, requests["client_credentials"], 10*time.Second)
	}

	// Nothing the outage answered 503 to took effect.
	if !e.active(t, at) {
		t.Error("the access token a failed revocation named is no longer active")
	}
	if status, body := e.refresh(t, rt); status != http.StatusOK {
		t.Errorf("refresh after the outage: %d %v (the failed refreshes rotated it?)", status, body)
	}
	if status, _, body := e.login(t, "mp", code); status != http.StatusOK {
		t.Errorf("login with the code sent during the outage: %d %v (the code was spent?)", status, body)
	}
	if status, body := e.adminJSON(t, "GET", "/admin/users/"+acctSub, testAdminToken, nil); status != http.StatusOK ||
		body["disabled"] != false || body["nickname"] != nil {
		t.Errorf("the user the outage answered 503 about: %d %v (disabled, erased or renamed?)", status, body)
	}
	if resp, err := http.DefaultClient.Do(vaultRequest("/wechat/session", url.Values{"code": {renewCode}})); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusNoContent {
		t.Errorf("renewing the session_key with the code sent during the outage: %d (the code was spent?)", resp.StatusCode)
	}
}

// waitHealthy retries req until it answers 200, failing after within.
func waitHealthy(t *testing.T, req func() *http.Request, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.DefaultClient.Do(req())
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not healthy %v after the database came back (last: %v %v)", within, resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func formRequest(target string, form url.Values) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}
