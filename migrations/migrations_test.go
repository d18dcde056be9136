package migrations_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/migrations"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// Two processes running `migrate up` on one empty database at once must both
// succeed and leave it at the latest version, each migration applied once.
func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	dsn := postgrestest.DSN(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	const n = 2
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		// One *sql.DB each, as two processes would have.
		db, err := migrations.OpenDB(dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = migrations.Up(ctx, db)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Up #%d: %v", i, err)
		}
	}

	latest, err := migrations.Latest()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var maxVersion, applied int64
	err = conn.QueryRow(ctx, `SELECT max(version_id), count(*) FILTER (WHERE version_id > 0)
		FROM goose_db_version WHERE is_applied`).Scan(&maxVersion, &applied)
	if err != nil {
		t.Fatal(err)
	}
	if maxVersion != latest {
		t.Errorf("schema version = %d, want %d", maxVersion, latest)
	}
	if applied != latest {
		t.Errorf("%d migrations recorded as applied, want %d (each once)", applied, latest)
	}
	for _, table := range []string{"clients", "signing_keys", "oauth2_access_tokens", "oauth2_refresh_tokens",
		"oauth2_authorization_codes", "oauth2_pkce_requests", "oauth2_oidc_sessions", "client_assertion_jtis",
		"users", "wechat_identities", "wechat_unions", "wechat_codes", "wechat_tokens", "leases",
		"audit_events", "login_tickets", "browser_sessions"} {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			t.Errorf("table %s missing after Up", table)
		}
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	dsn := postgrestest.DSN(t)
	ctx := t.Context()
	db, err := migrations.OpenDB(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	var before bytes.Buffer
	if err := migrations.Status(ctx, db, &before); err != nil {
		t.Fatalf("Status before Up: %v", err)
	}
	if !strings.Contains(before.String(), "pending") || strings.Contains(before.String(), "applied") {
		t.Errorf("Status before Up:\n%s\nwant every migration pending", before.String())
	}
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("Up: %v", err)
	}
	// A second Up has nothing to do and must not fail.
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	var after bytes.Buffer
	if err := migrations.Status(ctx, db, &after); err != nil {
		t.Fatalf("Status after Up: %v", err)
	}
	if strings.Contains(after.String(), "pending") || !strings.Contains(after.String(), "00001_init.sql") ||
		!strings.Contains(after.String(), "00002_wechat.sql") || !strings.Contains(after.String(), "00003_lifecycle.sql") ||
		!strings.Contains(after.String(), "00004_key_rotation.sql") ||
		!strings.Contains(after.String(), "00005_sealed_headers.sql") ||
		!strings.Contains(after.String(), "00006_audit.sql") {
		t.Errorf("Status after Up:\n%s\nwant every migration applied", after.String())
	}
}

// The database URL serve takes may carry pgxpool's pool_* parameters
// (docs/operations.md sizes the pool with them); migrations must accept the
// same URL instead of sending them to PostgreSQL as settings, which it
// refuses ("unrecognized configuration parameter").
func TestUpWithPoolParameters(t *testing.T) {
	t.Parallel()
	dsn := postgrestest.DSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := migrations.OpenDB(dsn + sep + "pool_max_conns=3&pool_min_conns=1&pool_max_conn_lifetime=1h")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrations.Up(t.Context(), db); err != nil {
		t.Fatalf("Up with pool_* parameters in the URL: %v", err)
	}
}

// A URL that does not parse is refused without repeating it: it may hold a
// password.
func TestOpenDBHidesBadURL(t *testing.T) {
	t.Parallel()
	_, err := migrations.OpenDB("postgres://wxidp:s3cret-pw@127.0.0.1:notaport/wxidp")
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("OpenDB of a malformed URL: %v, want an error that does not show the password", err)
	}
}
