package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
	"github.com/wxidp/wxidp/storage/postgres"
)

// serveProcess is a real `wxidp serve` process the test can signal.
type serveProcess struct {
	*server
	publicAddr, adminAddr string
	cmd                   *exec.Cmd
	exited                chan struct{} // closed when the process has exited
	exitErr               error         // cmd.Wait's answer, once exited is closed
}

// wait returns the process's exit error once it has exited.
func (p *serveProcess) wait() error {
	<-p.exited
	return p.exitErr
}

// buildWxidp builds the binary into a temporary directory.
func buildWxidp(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wxidp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startServeProcess runs `bin serve` with env, learns its addresses from the
// start-up log line, and keeps collecting its log. Unlike startProcess it
// leaves stopping to the test (SIGTERM, exit status); a process still
// running at the end is killed.
func startServeProcess(t *testing.T, bin, scheme string, env []string) *serveProcess {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p := &serveProcess{server: &server{logs: &syncBuffer{}}, cmd: cmd, exited: make(chan struct{})}
	go func() { p.exitErr = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		r.Close()
	})
	found := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			_, _ = p.logs.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, Public, Admin string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "wxidp serving" {
				found <- [2]string{line.Public, line.Admin}
			}
		}
	}()
	select {
	case addr := <-found:
		p.publicAddr, p.adminAddr = addr[0], addr[1]
		p.issuer, p.admin = scheme+"://"+addr[0], scheme+"://"+addr[1]
		return p
	case <-p.exited:
		t.Fatalf("wxidp serve exited: %v\n%s", p.exitErr, p.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("wxidp serve did not start\n%s", p.logs.String())
	}
	return nil
}

// terminate sends SIGTERM and returns when the process has closed both
// listeners: new connections are refused.
func (p *serveProcess) terminate(t *testing.T) time.Time {
	t.Helper()
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{p.publicAddr, p.adminAddr} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				break
			}
			c.Close()
			if time.Since(sent) > 5*time.Second {
				t.Fatalf("%s still accepts connections 5s after SIGTERM", addr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return sent
}

type tokenResult struct {
	status int
	body   map[string]any
	err    error
}

// postLogin sends a WeChat-code login from another goroutine (t.Fatal is
// not allowed there) and delivers the answer on the channel.
func postLogin(issuer string, form url.Values) <-chan tokenResult {
	out := make(chan tokenResult, 1)
	go func() {
		resp, err := http.PostForm(issuer+"/oauth2/token", form)
		if err != nil {
			out <- tokenResult{err: err}
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		err = json.NewDecoder(resp.Body).Decode(&m)
		out <- tokenResult{resp.StatusCode, m, err}
	}()
	return out
}

// waitCalls waits until the fake WeChat has received n calls to path: the
// login is in flight there.
func waitCalls(t *testing.T, wx *wechattest.Server, path string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); wx.Calls(path) < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s was not called", path)
		}
	}
}

func shutdownEnv(dsn, wxURL string, extra ...string) []string {
	return append(append(os.Environ(),
		"WXIDP_DATABASE_URL="+dsn, "WXIDP_SECRETS="+testSecret, "WXIDP_ADMIN_TOKEN="+testAdminToken,
		"WXIDP_ISSUER=http://wxidp.test", "WXIDP_WECHAT_API_BASE="+wxURL, "WXIDP_WECHAT_TIMEOUT=30s",
		"WXIDP_PUBLIC_ADDR=127.0.0.1:0", "WXIDP_ADMIN_ADDR=127.0.0.1:0", "WXIDP_RATE_LIMIT_IP=0"), extra...)
}

// TestShutdownDrainsInFlightLogin sends SIGTERM to a real process while a
// login waits on a slow WeChat: the listeners stop accepting at once (so
// /readyz fails), the login still completes with tokens (its phone-number
// step takes and releases the WeChat token lease during the drain), the
// process exits 0 within the shutdown timeout, and no lease is left held.
func TestShutdownDrainsInFlightLogin(t *testing.T) {
	t.Parallel()
	bin := buildWxidp(t)
	dsn := migratedDB(t)
	wx := wechattest.NewServer(t)
	// The janitor runs all the time, so SIGTERM may find it holding its lease.
	p := startServeProcess(t, bin, "http", shutdownEnv(dsn, wx.URL, "WXIDP_JANITOR_INTERVAL=20ms"))
	e := &wechatEnv{server: p.server, wx: wx}
	e.miniProgram(t, "mp", "wxapp1")

	// Three WeChat calls (code2session, stable_token, phone number) of 1s.
	wx.SetDelay(time.Second)
	login := postLogin(p.issuer, url.Values{
		"grant_type": {grants.WeChatCode}, "client_id": {"mp"}, "scope": {"openid phone"},
		"code": {wx.Login("wxapp1", "o-drain", "")}, "phone_code": {wx.PhoneCode("wxapp1", "13800138000")},
	})
	waitCalls(t, wx, wechattest.PathCode2Session, 1)
	sent := p.terminate(t)
	if resp, err := http.Get(p.issuer + "/readyz"); err == nil {
		resp.Body.Close()
		t.Errorf("/readyz answered %d after SIGTERM", resp.StatusCode)
	}

	res := <-login
	if res.err != nil || res.status != http.StatusOK || res.body["access_token"] == nil || res.body["id_token"] == nil {
		t.Fatalf("in-flight login: %d %v %v", res.status, res.body, res.err)
	}
	if err := p.wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.logs.String())
	}
	if took := time.Since(sent); took > 20*time.Second {
		t.Errorf("exit %v after SIGTERM, beyond the default 20s shutdown timeout", took)
	}
	if wx.Calls(wechattest.PathPhoneNumber) != 1 {
		t.Error("the phone-number step did not run during the drain")
	}

	pool, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var held []string
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(array_agg(l), '{}') FROM (
		SELECT 'lease ' || name AS l FROM leases WHERE until > now() UNION ALL
		SELECT 'wechat token ' || app_id FROM wechat_tokens WHERE lease_until > now()) held`).Scan(&held); err != nil {
		t.Fatal(err)
	}
	if len(held) != 0 {
		t.Errorf("still held after exit: %v", held)
	}
	if strings.Contains(p.logs.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged during the drain:\n%s", p.logs.String())
	}
}

// TestShutdownCutsRequestsPastTheTimeout: a login slower than
// WXIDP_SHUTDOWN_TIMEOUT is cut, and the process still exits 0 soon after
// the timeout, saying so in its log.
func TestShutdownCutsRequestsPastTheTimeout(t *testing.T) {
	t.Parallel()
	bin := buildWxidp(t)
	dsn := migratedDB(t)
	wx := wechattest.NewServer(t)
	p := startServeProcess(t, bin, "http", shutdownEnv(dsn, wx.URL, "WXIDP_SHUTDOWN_TIMEOUT=1s"))
	e := &wechatEnv{server: p.server, wx: wx}
	e.miniProgram(t, "mp", "wxapp1")

	const slow = 6 * time.Second
	wx.SetDelay(slow)
	login := postLogin(p.issuer, url.Values{
		"grant_type": {grants.WeChatCode}, "client_id": {"mp"}, "code": {wx.Login("wxapp1", "o-cut", "")},
	})
	waitCalls(t, wx, wechattest.PathCode2Session, 1)
	sent := p.terminate(t)
	if err := p.wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.logs.String())
	}
	// Generous, but below the WeChat delay: the process did not wait for it.
	if took := time.Since(sent); took > slow-time.Second {
		t.Errorf("exit %v after SIGTERM with a 1s shutdown timeout", took)
	}
	if res := <-login; res.err == nil {
		t.Errorf("the cut login got an answer: %d %v", res.status, res.body)
	}
	if !strings.Contains(p.logs.String(), "requests still running after the shutdown timeout were cut") {
		t.Errorf("the cut is not logged:\n%s", p.logs.String())
	}
}
