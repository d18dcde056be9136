package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
)

// revokeOnly is a KeyLister whose Revoke fails as told.
type revokeOnly struct{ err error }

func (revokeOnly) Keys() []storage.SigningKey             { return nil }
func (revokeOnly) Rotate(context.Context) error           { return nil }
func (r revokeOnly) Revoke(context.Context, string) error { return r.err }

// TestRevokeKeyOutage: a revocation that could not run, or whose reload
// could not, because the database went away is a 503 with Retry-After,
// never a 500; other failures stay 500.
func TestRevokeKeyOutage(t *testing.T) {
	t.Parallel()
	const token = "admin-token-for-tests-0123456789"
	for _, tc := range []struct {
		name   string
		err    error
		status int
	}{
		{"revoke unavailable", fmt.Errorf("keys: revoke k: %w", storage.ErrUnavailable), http.StatusServiceUnavailable},
		{"reload unavailable", fmt.Errorf("%w: k: %w", keys.ErrRevokedIncomplete, storage.ErrUnavailable), http.StatusServiceUnavailable},
		{"reload broken", fmt.Errorf("%w: k: corrupt key", keys.ErrRevokedIncomplete), http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			e, err := NewAdmin(AdminConfig{Token: token, Log: log, Keys: revokeOnly{tc.err}, Metrics: NewMetrics()})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodDelete, "/admin/keys/k", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			if tc.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}
