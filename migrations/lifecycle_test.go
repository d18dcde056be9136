package migrations_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage/postgres"
)

// 00003 runs outside a transaction (to build its index concurrently); its
// statements must survive running again, and its Down must undo it.
// Refresh tokens deactivated before it have no deactivation time: with a
// grace period they must still read inactive, and only expiry purges them.
func TestLifecycleMigration(t *testing.T) {
	t.Parallel()
	ctx, p, conn, dsn := atVersion(t, 2)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	now := time.Now()
	exec(`INSERT INTO clients (id, token_endpoint_auth_method, created_at, updated_at) VALUES ('c', 'none', now(), now())`)
	for _, rt := range []struct {
		sig     string
		expires time.Time
	}{{"rt-legacy", now.Add(time.Hour)}, {"rt-legacy-expired", now.Add(-time.Hour)}} {
		exec(`INSERT INTO oauth2_refresh_tokens (signature, request_id, requested_at, client_id, requested_scopes,
				granted_scopes, requested_audience, granted_audience, form, session, subject, expires_at, active,
				access_token_signature)
			VALUES ($1, 'req-1', now(), 'c', '{}', '{}', '{}', '{}', '', NULL, 's', $2, false, 'at-1')`, rt.sig, rt.expires)
	}

	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	// Then undone and redone, as a failed deploy rolled back and retried.
	if _, err := p.DownTo(ctx, 2); err != nil {
		t.Fatalf("down: %v", err)
	}
	for _, gone := range []string{"leases", "oauth2_refresh_tokens_deactivated_at"} {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, gone).Scan(&exists); err != nil || exists {
			t.Errorf("%s after Down: exists = %v, %v; want gone", gone, exists, err)
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}

	pool, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := postgres.New(pool, postgres.WithRefreshGrace(time.Hour))
	if _, err := s.GetRefreshTokenSession(ctx, "rt-legacy", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("GetRefreshTokenSession of a token deactivated before 00003: %v, want fosite.ErrInactiveToken", err)
	}
	if err := s.RotateRefreshToken(ctx, "req-1", "rt-legacy"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("RotateRefreshToken of a token deactivated before 00003: %v, want fosite.ErrNotFound", err)
	}
	stats, err := s.PurgeExpired(ctx, now, now.Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := stats["oauth2_refresh_tokens"]; got != 1 {
		t.Errorf("purged %d legacy refresh tokens, want 1 (the expired one)", got)
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt-legacy", nil); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("unexpired legacy token after purge: %v, want it kept (fosite.ErrInactiveToken)", err)
	}
}
