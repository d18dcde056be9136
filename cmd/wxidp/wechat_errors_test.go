package main

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// TestWeChatErrors: every WeChat failure becomes the documented OAuth error,
// and no user, identity or token row is written by a failed request.
func TestWeChatErrors(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxapp1")
	e.wx.AddApp("wxbad", "real-secret")
	e.adminJSON(t, "POST", "/admin/clients", testAdminToken, map[string]any{
		"client_id": "misconfigured", "token_endpoint_auth_method": "none", "scope": "openid",
		"wechat_appid": "wxbad", "wechat_app_secret": "wrong-secret",
	})
	secret := e.registerClient(t, map[string]any{"client_id": "confidential"})

	cases := []struct {
		name    string
		inject  []int // errcodes queued on jscode2session
		client  string
		form    []string
		code    string // "" means a fresh valid code
		status  int
		errCode string
	}{
		{"invalid code (injected)", []int{40029}, "mp", nil, "", 400, "invalid_grant"},
		{"code been used (injected)", []int{40163}, "mp", nil, "", 400, "invalid_grant"},
		{"high risk", []int{40226}, "mp", nil, "", 403, "access_denied"},
		{"minute quota", []int{45011}, "mp", nil, "", 429, "temporarily_unavailable"},
		{"busy twice", []int{-1, -1}, "mp", nil, "", 503, "temporarily_unavailable"},
		{"invalid appid", []int{40013}, "mp", nil, "", 500, "server_error"},
		{"invalid app secret (injected)", []int{40125}, "mp", nil, "", 500, "server_error"},
		{"unknown code", nil, "mp", nil, "0a1b2c3d4e5f", 400, "invalid_grant"},
		{"wrong app secret registered", nil, "misconfigured", nil, "", 500, "server_error"},
		{"missing code", nil, "mp", nil, "-", 400, "invalid_request"},
		{"malformed code", nil, "mp", nil, "a b<script>", 400, "invalid_request"},
		{"oversized code", nil, "mp", nil, strings.Repeat("a", 500), 400, "invalid_request"},
		{"scope outside registration", nil, "misconfigured", []string{"scope", "openid phone"}, "", 400, "invalid_scope"},
		{"unknown client", nil, "nobody", nil, "", 401, "invalid_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range tc.inject {
				e.wx.FailNext(wechattest.PathCode2Session, c)
			}
			code := tc.code
			switch code {
			case "":
				app := "wxapp1"
				if tc.client == "misconfigured" {
					app = "wxbad"
				}
				code = e.wx.Login(app, "o-"+strings.ReplaceAll(tc.name, " ", "-"), "")
			case "-":
				code = ""
			}
			status, h, body := e.login(t, tc.client, code, tc.form...)
			if status != tc.status || body["error"] != tc.errCode {
				t.Fatalf("got %d %v, want %d %s", status, body, tc.status, tc.errCode)
			}
			if status == 429 && h.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			checkNoLeak(t, tc.name, stringify(body))
		})
	}
	t.Run("confidential client", func(t *testing.T) {
		form := url.Values{"grant_type": {grants.WeChatCode}, "code": {e.wx.Login("wxapp1", "o-x", "")}}
		status, _, body := e.postToken(t, "confidential", secret, form)
		if status != 400 || body["error"] != "unauthorized_client" {
			t.Fatalf("got %d %v", status, body)
		}
	})
	for _, table := range []string{"users", "wechat_identities", "oauth2_access_tokens", "oauth2_refresh_tokens"} {
		if n := e.count(t, table); n != 0 {
			t.Errorf("failed logins left %d rows in %s", n, table)
		}
	}
	if logs := e.logs.String(); !strings.Contains(logs, `"client_id":"misconfigured"`) {
		t.Error("a misconfigured client's failure is not logged with its client_id")
	}

	t.Run("busy once is retried", func(t *testing.T) {
		e.wx.FailNext(wechattest.PathCode2Session, -1)
		status, _, body := e.login(t, "mp", e.wx.Login("wxapp1", "o-retry", ""))
		if status != 200 {
			t.Fatalf("got %d %v", status, body)
		}
	})
}

func TestWeChatReplay(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxapp1")
	code := e.wx.Login("wxapp1", "o-replay", "")
	if status, _, body := e.login(t, "mp", code); status != 200 {
		t.Fatalf("first use: %d %v", status, body)
	}
	calls := e.wx.Calls(wechattest.PathCode2Session)
	status, _, body := e.login(t, "mp", code)
	if status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %v", status, body)
	}
	if e.wx.Calls(wechattest.PathCode2Session) != calls {
		t.Fatal("a replayed code reached WeChat")
	}

	// Concurrent duplicates of one fresh code: one WeChat call, one success.
	code = e.wx.Login("wxapp1", "o-dup", "")
	calls = e.wx.Calls(wechattest.PathCode2Session)
	const n = 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range n {
		wg.Go(func() {
			status, _, _ := e.login(t, "mp", code)
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if statuses[200] != 1 || statuses[400] != n-1 {
		t.Fatalf("concurrent duplicates: %v, want one 200 and %d 400", statuses, n-1)
	}
	if got := e.wx.Calls(wechattest.PathCode2Session) - calls; got != 1 {
		t.Fatalf("concurrent duplicates made %d WeChat calls, want 1", got)
	}
}

func TestWeChatUnavailable(t *testing.T) {
	t.Parallel()
	t.Run("slower than the timeout", func(t *testing.T) {
		t.Parallel()
		e := newWeChatEnv(t, func(c *serveConfig) { c.WeChatTimeout = 200 * time.Millisecond })
		e.miniProgram(t, "mp", "wxapp1")
		e.wx.SetDelay(time.Second)
		status, _, body := e.login(t, "mp", e.wx.Login("wxapp1", "o-slow", ""))
		if status != 503 || body["error"] != "temporarily_unavailable" {
			t.Fatalf("got %d %v", status, body)
		}
		if e.count(t, "users") != 0 {
			t.Error("a timed-out login created a user")
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		e := newWeChatEnv(t)
		e.miniProgram(t, "mp", "wxapp1")
		code := e.wx.Login("wxapp1", "o-down", "")
		e.wx.Close()
		status, _, body := e.login(t, "mp", code)
		if status != 503 || body["error"] != "temporarily_unavailable" {
			t.Fatalf("got %d %v", status, body)
		}
	})
	t.Run("body over 64 KiB", func(t *testing.T) {
		t.Parallel()
		e := newWeChatEnv(t)
		e.miniProgram(t, "mp", "wxapp1")
		status, _, _ := e.login(t, "mp", "x", "pad", strings.Repeat("a", 70<<10))
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d, want 413", status)
		}
	})
}
