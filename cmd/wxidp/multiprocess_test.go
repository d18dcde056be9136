package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// TestTwoProcessesOneDatabase starts two real `wxidp serve` processes on one
// database: a token issued by A refreshes at B, is revoked at A and
// introspects inactive at B.
func TestTwoProcessesOneDatabase(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "wxidp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
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

// startProcess runs `bin serve` and learns its addresses from the start-up
// log line.
func startProcess(t *testing.T, bin string, env []string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve")
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	found := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Public, Admin string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "wxidp serving" {
				found <- [2]string{line.Public, line.Admin}
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case addr := <-found:
		return &server{issuer: "http://" + addr[0], admin: "http://" + addr[1], logs: &syncBuffer{}, stop: cancel}
	case <-time.After(30 * time.Second):
		t.Fatal("wxidp serve did not start")
		return nil
	}
}
