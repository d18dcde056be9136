package main

import (
	"net/url"
	"os"
	"testing"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// TestTwoProcessesOneDatabase starts two real `wxidp serve` processes on one
// database: a token issued by A refreshes at B, is revoked at A and
// introspects inactive at B.
func TestTwoProcessesOneDatabase(t *testing.T) {
	t.Parallel()
	bin := buildWxidp(t)
	dsn := migratedDB(t)
	wx := wechattest.NewServer(t)
	wx.AddApp("wxapp1", "secret-of-wxapp1")
	env := append(os.Environ(),
		"WXIDP_DATABASE_URL="+dsn, "WXIDP_SECRETS="+testSecret, "WXIDP_ADMIN_TOKEN="+testAdminToken,
		"WXIDP_ISSUER=http://wxidp.test", "WXIDP_WECHAT_API_BASE="+wx.URL,
		"WXIDP_PUBLIC_ADDR=127.0.0.1:0", "WXIDP_ADMIN_ADDR=127.0.0.1:0", "WXIDP_RATE_LIMIT_IP=0")
	a, b := startProcess(t, bin, env), startProcess(t, bin, env)

	e := &lifecycleEnv{wechatEnv: &wechatEnv{server: a, wx: wx}}
	e.miniProgram(t, "mp", "wxapp1")
	e.rsSecret = e.registerClient(t, map[string]any{"client_id": "rs", "scope": "introspect"})

	tok := e.loginTokens(t, "o-multi")
	onB := &lifecycleEnv{wechatEnv: &wechatEnv{server: b, wx: wx}, rsSecret: e.rsSecret}
	status, refreshed := onB.refresh(t, tok["refresh_token"].(string))
	if status != 200 {
		t.Fatalf("refresh at B of a token issued by A: %d %v", status, refreshed)
	}
	at := refreshed["access_token"].(string)
	if !onB.active(t, at) || !e.active(t, at) {
		t.Fatal("the refreshed token is not active at both processes")
	}
	if status := e.revoke(t, url.Values{"token": {at}, "client_id": {"mp"}}, "", ""); status != 200 {
		t.Fatalf("revoke at A: %d", status)
	}
	if onB.active(t, at) || onB.active(t, refreshed["refresh_token"].(string)) {
		t.Fatal("a token revoked at A is still active at B")
	}
	if kids(fetchJWKS(t, a.issuer))[0] != kids(fetchJWKS(t, b.issuer))[0] {
		t.Fatal("the processes publish different keys")
	}
}

// startProcess runs `bin serve` (plain HTTP) and returns it as a server
// that stop kills; startServeProcess has the details.
func startProcess(t *testing.T, bin string, env []string) *server {
	t.Helper()
	p := startServeProcess(t, bin, "http", env)
	p.stop = func() { _ = p.cmd.Process.Kill(); _ = p.wait() }
	return p.server
}
