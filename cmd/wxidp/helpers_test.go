package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

const (
	testSecret     = "0123456789abcdef0123456789abcdef-test"
	testAdminToken = "admin-token-for-tests-0123456789"
)

// server is one running `wxidp serve` inside the test process.
type server struct {
	issuer, admin string
	logs          *syncBuffer
	stop          func()
}

// migratedDB returns the DSN of a fresh database with the schema applied.
func migratedDB(t testing.TB) string {
	t.Helper()
	dsn := postgrestest.DSN(t)
	if err := runMigrate(context.Background(), dsn, "up", io.Discard); err != nil {
		t.Fatal(err)
	}
	return dsn
}

func testConfig(dsn string) serveConfig {
	return serveConfig{
		DatabaseURL:     dsn,
		Secrets:         testSecret,
		AdminToken:      testAdminToken,
		AccessTokenTTL:  15 * time.Minute,
		RefreshTokenTTL: time.Hour,
		IDTokenTTL:      time.Hour,
		KeyReload:       time.Minute,
		JWKSMaxAge:      10 * time.Minute,
		WeChatAPIBase:   "http://127.0.0.1:1",
		WeChatTimeout:   5 * time.Second,
		DatabaseTimeout: 5 * time.Second,
		// No rate limits (the zero limitsConfig): tests fire bursts from
		// one address; the rate-limit tests set defaultLimits().
	}
}

// startServer runs runServe on loopback ports chosen by the kernel and
// returns once both listeners answer.
func startServer(t testing.TB, cfg serveConfig) *server {
	t.Helper()
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.publicLn, cfg.adminLn = pub, adm
	cfg.Issuer = "http://" + pub.Addr().String()
	s := &server{issuer: cfg.Issuer, admin: "http://" + adm.Addr().String(), logs: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, cfg, io.Discard, slog.New(slog.NewJSONHandler(s.logs, nil)))
	}()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(s.stop)
	up := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(s.issuer + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		up <- err
	}()
	select {
	case err := <-up:
		if err != nil {
			t.Fatalf("server did not come up: %v", err)
		}
	case err := <-done:
		done <- nil // stop, run at cleanup, waits on done too
		t.Fatalf("serve exited before serving: %v", err)
	}
	return s
}

// waitUp polls /healthz; runServe starts listening only after the keys are
// loaded, but the listeners exist from the start, so connections queue.
func waitUp(t testing.TB, issuer string) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(issuer + "/healthz")
	if err != nil {
		t.Fatalf("server did not come up: %v", err)
	}
	resp.Body.Close()
}

// registerClient creates a client through the admin API and returns its
// secret.
func (s *server) registerClient(t testing.TB, body map[string]any) string {
	t.Helper()
	status, resp := s.adminJSON(t, http.MethodPost, "/admin/clients", testAdminToken, body)
	if status != http.StatusCreated {
		t.Fatalf("register client: %d %v", status, resp)
	}
	return resp["client_secret"].(string)
}

func (s *server) adminJSON(t testing.TB, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	status, out := s.adminRaw(t, method, path, token, "application/json", raw)
	var m map[string]any
	if len(out) > 0 {
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s %s: non-JSON answer %q", method, path, out)
		}
	}
	return status, m
}

func (s *server) adminRaw(t testing.TB, method, path, token, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.admin+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	return do(t, req)
}

// postToken posts a form to the token endpoint, with basic auth when user
// is set.
func (s *server) postToken(t testing.TB, user, pass string, form url.Values) (int, http.Header, map[string]any) {
	t.Helper()
	return s.postForm(t, "/oauth2/token", nil, form, user, pass)
}

// postForm posts form (and query) to a public endpoint, with basic auth
// when user is set, and decodes the JSON answer.
func (s *server) postForm(t testing.TB, path string, query, form url.Values, user, pass string) (int, http.Header, map[string]any) {
	t.Helper()
	target := s.issuer + path
	if query != nil {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 && json.Unmarshal(raw, &m) != nil {
		t.Fatalf("%s answered non-JSON %q", path, raw)
	}
	return resp.StatusCode, resp.Header, m
}

func do(t testing.TB, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// syncBuffer collects log output written from server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// decodeDo sends req and decodes a JSON object answer.
func decodeDo(t testing.TB, req *http.Request) (int, map[string]any) {
	t.Helper()
	status, raw := do(t, req)
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("non-JSON answer %q", raw)
		}
	}
	return status, m
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
