package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// pingFunc is storage whose readiness answer the test chooses: fault
// injection where the store sits, not a model of the database.
type pingFunc func(ctx context.Context) error

func (f pingFunc) Ping(ctx context.Context) error { return f(ctx) }

// TestReadyz: /readyz is 200 when storage answers the ping; 503 with
// Retry-After when it fails or hangs, the hang cut at ReadyTimeout; and 503
// "draining" at once while the process drains, without asking storage.
func TestReadyz(t *testing.T) {
	t.Parallel()
	reachable := func(*testing.T) pingFunc { return func(context.Context) error { return nil } }
	down := func(*testing.T) pingFunc {
		return func(context.Context) error { return errors.New("dial tcp 127.0.0.1:5432: connection refused") }
	}
	// hung answers only when its context ends; if /readyz set no deadline
	// it gives up after a minute and says ready, failing the test rather
	// than hanging it.
	hung := func(t *testing.T) pingFunc {
		return func(ctx context.Context) error {
			if dl, ok := ctx.Deadline(); !ok {
				t.Error("the ping has no deadline")
			} else if time.Until(dl) > ReadyTimeout {
				t.Errorf("the ping's deadline is %v away, want at most ReadyTimeout (%v)", time.Until(dl), ReadyTimeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Minute):
				return nil
			}
		}
	}
	for name, tc := range map[string]struct {
		store      func(*testing.T) pingFunc
		draining   bool
		status     int
		body       string
		retryAfter string
	}{
		"ready":               {store: reachable, status: http.StatusOK, body: "ok"},
		"storage down":        {store: down, status: http.StatusServiceUnavailable, body: "unavailable", retryAfter: retryAfterUnavailable},
		"storage hung":        {store: hung, status: http.StatusServiceUnavailable, body: "unavailable", retryAfter: retryAfterUnavailable},
		"draining":            {store: reachable, draining: true, status: http.StatusServiceUnavailable, body: "draining"},
		"draining, then hung": {store: hung, draining: true, status: http.StatusServiceUnavailable, body: "draining"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e, err := NewPublic(PublicConfig{
				Issuer: "https://wxidp.test", Log: slog.New(slog.DiscardHandler), Metrics: NewMetrics(),
				Store: tc.store(t), Draining: func() bool { return tc.draining },
			})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			took := time.Since(start)
			var body map[string]string
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if rec.Code != tc.status || body["status"] != tc.body || rec.Header().Get("Retry-After") != tc.retryAfter {
				t.Errorf("/readyz: %d %q (Retry-After %q), want %d %q (Retry-After %q)",
					rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"), tc.status, tc.body, tc.retryAfter)
			}
			// The README promises an answer within 2 s, whatever storage does.
			if took > 2*time.Second {
				t.Errorf("/readyz took %v, want at most 2s", took)
			}
		})
	}
}
