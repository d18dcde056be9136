package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
)

// lister counts loads and can hold them (a hung database) or fail them.
type lister struct {
	store *memory.Store
	calls atomic.Int32
	gate  chan struct{} // when set, a load waits for it
	fail  error
}

func (l *lister) ListClients(ctx context.Context) ([]storage.Client, error) {
	l.calls.Add(1)
	if l.gate != nil {
		<-l.gate
	}
	if l.fail != nil {
		return nil, l.fail
	}
	return l.store.ListClients(ctx)
}

func addCORSClient(t *testing.T, s *memory.Store, id, origin string) {
	t.Helper()
	c := &storage.Client{ID: id, TokenEndpointAuthMethod: "client_secret_basic", AllowedCORSOrigins: []string{origin}}
	if err := s.CreateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// waitLoad waits for the load in progress, if any.
func waitLoad(c *originCache) {
	c.mu.Lock()
	done := c.loading
	c.mu.Unlock()
	if done != nil {
		<-done
	}
}

// TestOriginCache: concurrent lookups share one load; later lookups, any
// origin included, cost no database call until the TTL passes; then a
// hung database delays no request (the old set answers) and the reload
// brings the new origin.
func TestOriginCache(t *testing.T) {
	t.Parallel()
	store := memory.New()
	addCORSClient(t, store, "spa", spaOrigin)
	l := &lister{store: store}
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	c := newOriginCache(l)
	c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ctx := context.Background()

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if ok, err := c.allowed(ctx, spaOrigin, "spa"); !ok || err != nil {
				t.Errorf("spa's origin on spa: %v %v", ok, err)
			}
		})
	}
	wg.Wait()
	for _, tc := range []struct {
		origin, client string
		want           bool
	}{{spaOrigin, "", true}, {spaOrigin, "other", false}, {evilOrigin, "", false}, {otherOrigin, "spa", false}} {
		if ok, err := c.allowed(ctx, tc.origin, tc.client); ok != tc.want || err != nil {
			t.Errorf("%s on %q: %v %v, want %v", tc.origin, tc.client, ok, err, tc.want)
		}
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("%d loads for 24 lookups within the TTL, want 1", n)
	}

	addCORSClient(t, store, "other", otherOrigin)
	l.gate = make(chan struct{})
	mu.Lock()
	now = now.Add(corsOriginsTTL)
	mu.Unlock()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for range 5 { // the database hangs: the old set answers, one reload waits
		if ok, err := c.allowed(lctx, spaOrigin, "spa"); !ok || err != nil {
			t.Fatalf("lookup while the reload hangs: %v %v", ok, err)
		}
	}
	if ok, _ := c.allowed(lctx, otherOrigin, "other"); ok {
		t.Fatal("an origin allowed before the reload")
	}
	close(l.gate)
	waitLoad(c)
	if ok, err := c.allowed(ctx, otherOrigin, "other"); !ok || err != nil {
		t.Fatalf("the reloaded set lacks the new origin: %v %v", ok, err)
	}
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("%d loads, want 2 (one reload at a time)", n)
	}
}

// TestCORSPreflightDatabaseDown: with no set loaded yet and the database
// unavailable, a preflight answers 503 (as without the cache) and an
// actual request gets no CORS header.
func TestCORSPreflightDatabaseDown(t *testing.T) {
	t.Parallel()
	l := &lister{store: memory.New(), fail: storage.ErrUnavailable}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := newEcho(log, false, noMetrics)
	e.POST("/oauth2/token", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	registerCORS(e, l, log)

	r := httptest.NewRequest(http.MethodOptions, "/oauth2/token", nil)
	r.Header.Set(echo.HeaderOrigin, spaOrigin)
	r.Header.Set(echo.HeaderAccessControlRequestMethod, http.MethodPost)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, r)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get(echo.HeaderAccessControlAllowOrigin) != "" {
		t.Fatalf("preflight with the database down: %d %v", rec.Code, rec.Header())
	}
	r = httptest.NewRequest(http.MethodPost, "/oauth2/token?client_id=spa", nil)
	r.SetBasicAuth("spa", "x")
	r.Header.Set(echo.HeaderOrigin, spaOrigin)
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK || rec.Header().Get(echo.HeaderAccessControlAllowOrigin) != "" {
		t.Fatalf("request with the database down: %d %v", rec.Code, rec.Header())
	}
}
