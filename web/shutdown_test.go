package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage/memory"
)

// serveOn runs Serve on a loopback listener until the returned cancel is
// called; done receives Serve's answer.
func serveOn(t *testing.T, h http.Handler, opts ServeOptions) (addr string, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, ln, h, opts) }()
	t.Cleanup(cancel)
	return ln.Addr().String(), cancel, errc
}

// waitRefused waits until addr refuses connections: Serve has closed its
// listener.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
	}
	t.Fatal("the listener still accepts connections after shutdown began")
}

type result struct {
	status int
	body   string
	err    error
}

func get(url string) <-chan result {
	out := make(chan result, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			out <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- result{resp.StatusCode, string(b), err}
	}()
	return out
}

// TestServeDrainsInFlightRequests: once shutdown begins the listener stops
// accepting, and a request already running finishes with its context
// intact.
func TestServeDrainsInFlightRequests(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var ctxErr atomic.Value
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		if err := r.Context().Err(); err != nil {
			ctxErr.Store(err)
		}
		_, _ = io.WriteString(w, "done")
	})
	addr, cancel, done := serveOn(t, h, ServeOptions{ShutdownTimeout: time.Minute})
	res := get("http://" + addr + "/")
	<-started
	cancel()
	waitRefused(t, addr)
	close(release)
	if r := <-res; r.err != nil || r.status != http.StatusOK || r.body != "done" {
		t.Fatalf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := ctxErr.Load(); err != nil {
		t.Errorf("the in-flight request's context ended during the drain: %v", err)
	}
}

// TestServeCutsRequestsPastTheTimeout: a request still running when the
// shutdown timeout ends is cut (its context cancelled) and Serve returns.
func TestServeCutsRequestsPastTheTimeout(t *testing.T) {
	started, cut := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(cut)
	})
	addr, cancel, done := serveOn(t, h, ServeOptions{ShutdownTimeout: 100 * time.Millisecond})
	res := get("http://" + addr + "/")
	<-started
	cancel()
	if err := <-done; !errors.Is(err, ErrShutdownTimeout) {
		t.Errorf("Serve: %v, want ErrShutdownTimeout", err)
	}
	<-cut
	if r := <-res; r.err == nil {
		t.Errorf("the cut request got an answer: %d %q", r.status, r.body)
	}
}

// TestReadyzDraining: /readyz fails at once when the process drains, even
// though storage is fine.
func TestReadyzDraining(t *testing.T) {
	var draining atomic.Bool
	e, err := NewPublic(PublicConfig{
		Issuer: "https://wxidp.test", Log: slog.New(slog.DiscardHandler), Metrics: NewMetrics(),
		Store: memory.New(), Draining: draining.Load,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{http.StatusOK, http.StatusServiceUnavailable} {
		if want == http.StatusServiceUnavailable {
			draining.Store(true)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != want {
			t.Errorf("draining=%v: /readyz %d, want %d", draining.Load(), rec.Code, want)
		}
	}
}

// TestHSTS: Strict-Transport-Security is sent when the issuer is https,
// and only then (over plain HTTP it would be meaningless or a lie).
func TestHSTS(t *testing.T) {
	for issuer, want := range map[string]string{"https://wxidp.test": "max-age=31536000", "http://127.0.0.1:4444": ""} {
		e, err := NewPublic(PublicConfig{Issuer: issuer, Log: slog.New(slog.DiscardHandler), Metrics: NewMetrics(), Store: memory.New()})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if got := rec.Header().Get("Strict-Transport-Security"); got != want {
			t.Errorf("issuer %s: Strict-Transport-Security %q, want %q", issuer, got, want)
		}
	}
}
