package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

const (
	testAdminToken = "bench-test-admin-token-0123456789"
	testSecrets    = "bench-test-secret-0123456789abcdef0123"
)

// TestBenchAgainstServer builds wxidp, serves it on a fresh database with
// the bench's fake WeChat, and runs every scenario briefly: every request
// must succeed, every figure be there (2 s each: on a CI machine busy with
// other packages, a login under the race detector's fake WeChat can take
// most of a second), the JSON parse and the bench's
// clients be gone afterwards. It asserts nothing about speed.
func TestBenchAgainstServer(t *testing.T) {
	dsn := postgrestest.DSN(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "wxidp")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/wxidp/wxidp/cmd/wxidp").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	wxLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pub, adm := freeAddr(t), freeAddr(t)
	env := append(os.Environ(), "WXIDP_DATABASE_URL="+dsn, "WXIDP_SECRETS="+testSecrets,
		"WXIDP_ADMIN_TOKEN="+testAdminToken, "WXIDP_ISSUER=http://"+pub,
		"WXIDP_PUBLIC_ADDR="+pub, "WXIDP_ADMIN_ADDR="+adm, "WXIDP_WECHAT_API_BASE=http://"+wxLn.Addr().String())
	for _, l := range []string{"IP", "CLIENT", "AUTH_FAILURES", "SUBJECT", "INVALID_TOKEN", "WECHAT_APPID", "BAD_CODES"} {
		env = append(env, "WXIDP_RATE_LIMIT_"+l+"=0")
	}
	migrate := exec.Command(bin, "migrate", "up")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	logs := startServe(t, bin, env, "http://"+pub)

	o := options{Issuer: "http://" + pub, Admin: "http://" + adm, AdminToken: testAdminToken,
		Scenarios: []string{"all"}, Concurrency: 4, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond,
		Runs: 1, JSONFile: filepath.Join(dir, "out.json"), SignDuration: 200 * time.Millisecond,
		AuthCodes: 400, Timeout: 20 * time.Second, wechatLn: wxLn}
	var stdout, stderr bytes.Buffer
	rep, err := run(context.Background(), o, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s\nserver:\n%s", err, stderr.String(), logs.String())
	}
	if len(rep.Runs) != 1 || len(rep.Runs[0].Scenarios) != len(scenarios()) {
		t.Fatalf("want one run of %d scenarios, got %+v", len(scenarios()), rep.Runs)
	}
	r := rep.Runs[0]
	if r.S == nil || r.S.PerSecond <= 0 || len(r.Ceilings) != len(keys.Signers()) || r.Ceilings[0].Signer != "go" {
		t.Errorf("signing ceilings %+v, S %+v: want every signer of this build measured", r.Ceilings, r.S)
	}
	for _, s := range r.Scenarios {
		switch {
		case s.SetupError != "":
			t.Errorf("%s: setup failed: %s", s.Name, s.SetupError)
		case s.ErrorCount != 0:
			t.Errorf("%s: %d errors %v, first: %s", s.Name, s.ErrorCount, s.Errors, s.FirstError)
		case s.Requests == 0 || s.Throughput <= 0 || s.LatencyMS.Max <= 0:
			t.Errorf("%s: nothing measured: %+v", s.Name, s)
		case s.ServerCPUPer1k == nil || s.ServerRSSBytes == nil || *s.ServerRSSBytes <= 0 || s.RatioToS == nil:
			t.Errorf("%s: server figures or ratio missing: %+v", s.Name, s)
		}
		if !strings.Contains(stdout.String(), s.Name) {
			t.Errorf("the table lacks %s:\n%s", s.Name, stdout.String())
		}
	}
	if c := r.Scenarios[3].Codes; r.Scenarios[3].Name != scAuthCode || c == nil || c.Minted != o.AuthCodes || c.Used == 0 {
		t.Errorf("authcode scenario %+v: want %d codes minted and some used", r.Scenarios[3], o.AuthCodes)
	}

	raw, err := os.ReadFile(o.JSONFile)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatalf("--json wrote what does not parse: %v", err)
	}
	if back.Machine.GOMAXPROCS == 0 || back.Machine.SignerBuild == "" || back.Machine.GoVersion == "" ||
		len(back.Runs) != 1 || len(back.Runs[0].Scenarios) != len(scenarios()) {
		t.Errorf("JSON lacks machine or results: %s", raw)
	}

	// The bench deleted every client it registered.
	e := newEnv(o.Issuer, o.Admin, testAdminToken, 1, 10*time.Second, nil, "", nil)
	var list struct {
		Clients []struct {
			ID string `json:"client_id"`
		} `json:"clients"`
	}
	if err := e.adminJSON(context.Background(), http.MethodGet, "/admin/clients", nil, http.StatusOK, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Clients) != 0 {
		t.Errorf("clients left behind: %+v", list.Clients)
	}
}

// freeAddr returns a loopback address the kernel just had free.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs `wxidp serve` until the test ends (before its database
// is dropped) and waits for it to answer.
func startServe(t *testing.T, bin string, env []string, issuer string) *syncBuffer {
	t.Helper()
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "serve")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(issuer + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return logs
			}
		}
		select {
		case <-exited:
			t.Fatalf("wxidp serve exited:\n%s", logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("wxidp serve did not come up: %v\n%s", err, logs.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
