package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// These tests cover what the shared suite cannot see through the interface:
// the rows as stored, PostgreSQL's own failure modes, and several processes
// sharing one database.

func newTestClient(t *testing.T, ctx context.Context, s *postgres.Store, id string) *storage.Client {
	t.Helper()
	c := &storage.Client{ID: id, GrantTypes: []string{"refresh_token"}, Scopes: []string{"openid", "offline"},
		TokenEndpointAuthMethod: "none"}
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	return c
}

func newTestRequest(c *storage.Client, id string) *fosite.Request {
	sess := openid.NewDefaultSession()
	sess.Subject = "sub-" + id
	for _, tt := range []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken, fosite.AuthorizeCode} {
		sess.SetExpiresAt(tt, expiryOf(tt))
	}
	r := fosite.NewRequest()
	r.ID = id
	r.Client = storage.NewOAuthClient(c)
	r.Session = sess
	r.GrantScope("offline")
	return r
}

func expiryOf(tt fosite.TokenType) time.Time {
	base := time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)
	switch tt {
	case fosite.AccessToken:
		return base
	case fosite.RefreshToken:
		return base.Add(720 * time.Hour)
	default:
		return base.Add(-time.Hour)
	}
}

// The janitor deletes by expires_at, so each table must carry the expiry of
// its own token type, NULL when the session sets none; and the OpenID
// Connect table must never hold a raw authorization code.
func TestStoredRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool, _ := postgrestest.NewStore(t)
	c := newTestClient(t, ctx, s, "a")
	r := newTestRequest(c, "req-1")
	const code = "raw-authorization-code"
	steps := []error{
		s.CreateAccessTokenSession(ctx, "at", r),
		s.CreateRefreshTokenSession(ctx, "rt", "at", r),
		s.CreateAuthorizeCodeSession(ctx, "code-sig", r),
		s.CreatePKCERequestSession(ctx, "code-sig", r),
		s.CreateOpenIDConnectSession(ctx, code, r),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("create #%d: %v", i, err)
		}
	}
	for _, tc := range []struct {
		table, key string
		want       time.Time
	}{
		{"oauth2_access_tokens", "at", expiryOf(fosite.AccessToken)},
		{"oauth2_refresh_tokens", "rt", expiryOf(fosite.RefreshToken)},
		{"oauth2_authorization_codes", "code-sig", expiryOf(fosite.AuthorizeCode)},
		{"oauth2_pkce_requests", "code-sig", expiryOf(fosite.AuthorizeCode)},
		{"oauth2_oidc_sessions", storage.HashKey(code), expiryOf(fosite.AuthorizeCode)},
	} {
		var (
			got     time.Time
			subject string
		)
		// Table names are test constants.
		err := pool.QueryRow(ctx, `SELECT expires_at, subject FROM `+tc.table+` WHERE signature = $1`, tc.key).Scan(&got, &subject)
		if err != nil {
			t.Errorf("%s: %v", tc.table, err)
			continue
		}
		if !got.Equal(tc.want) || subject != "sub-req-1" {
			t.Errorf("%s: expires_at, subject = %v, %q; want %v, %q", tc.table, got, subject, tc.want, "sub-req-1")
		}
	}
	var raw int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM oauth2_oidc_sessions WHERE signature = $1`, code).Scan(&raw); err != nil || raw != 0 {
		t.Errorf("rows keyed by the raw code: %d, %v; want 0", raw, err)
	}
	if _, err := s.GetOpenIDConnectSession(ctx, code, fosite.NewRequest()); err != nil {
		t.Errorf("GetOpenIDConnectSession by the raw code: %v", err)
	}

	noExpiry := newTestRequest(c, "req-2")
	noExpiry.Session = openid.NewDefaultSession()
	if err := s.CreateAccessTokenSession(ctx, "at-forever", noExpiry); err != nil {
		t.Fatal(err)
	}
	var null bool
	if err := pool.QueryRow(ctx, `SELECT expires_at IS NULL FROM oauth2_access_tokens WHERE signature = 'at-forever'`).Scan(&null); err != nil || !null {
		t.Errorf("expires_at of a session without expiry: NULL = %v, %v; want NULL", null, err)
	}
}

// A deadlock between two transactions reaches the caller as
// fosite.ErrSerializationFailure, with PostgreSQL's error still inside.
func TestDeadlockIsSerializationFailure(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _, _ := postgrestest.NewStore(t)
	c := newTestClient(t, ctx, s, "a")
	for _, sig := range []string{"c1", "c2"} {
		if err := s.CreateAuthorizeCodeSession(ctx, sig, newTestRequest(c, "req-"+sig)); err != nil {
			t.Fatal(err)
		}
	}
	txA, txB := mustBegin(t, ctx, s), mustBegin(t, ctx, s)
	if err := s.InvalidateAuthorizeCodeSession(txA, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.InvalidateAuthorizeCodeSession(txB, "c2"); err != nil {
		t.Fatal(err)
	}
	// Each now waits for the row the other holds; PostgreSQL aborts one
	// after deadlock_timeout.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, step := range []struct {
		ctx context.Context
		sig string
	}{{txA, "c2"}, {txB, "c1"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.InvalidateAuthorizeCodeSession(step.ctx, step.sig)
			if errs[i] != nil {
				_ = s.Rollback(step.ctx)
				return
			}
			errs[i] = s.Commit(step.ctx)
		}()
	}
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		var pgErr *pgconn.PgError
		if !errors.Is(err, fosite.ErrSerializationFailure) || !errors.As(err, &pgErr) || pgErr.Code != "40P01" {
			t.Errorf("deadlock victim got %v, want fosite.ErrSerializationFailure wrapping SQLSTATE 40P01", err)
		}
	}
	if failed != 1 {
		t.Errorf("%d transactions failed, want exactly the deadlock victim", failed)
	}
}

// fosite rolls back after a failed Commit and turns an error from that
// Rollback into a server error, hiding why the commit failed.
func TestRollbackAfterFailedCommit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool, _ := postgrestest.NewStore(t)
	tx := mustBegin(t, ctx, s)
	newTestClient(t, tx, s, "a")
	// Kill the transaction's connection: the commit cannot succeed.
	var killed int
	err := pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()`).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminating the transaction's backend: %d, %v", killed, err)
	}
	if err := s.Commit(tx); err == nil {
		t.Fatal("Commit on a terminated connection succeeded")
	}
	if err := s.Rollback(tx); err != nil {
		t.Errorf("Rollback after a failed Commit: %v, want nil", err)
	}
	if _, err := s.LookupClient(ctx, "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("LookupClient of the client created in the failed tx: %v, want ErrNotFound", err)
	}
}

// Several processes share one database: a token issued by one is rotated by
// another, and concurrent rotations from both still let exactly one win.
func TestTwoProcessesRotate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s1, _, dsn := postgrestest.NewStore(t)
	pool2, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool2.Close)
	s2 := postgres.New(pool2)
	stores := []*postgres.Store{s1, s2}

	c := newTestClient(t, ctx, s1, "a")
	r := newTestRequest(c, "req-1")
	if err := s1.CreateAccessTokenSession(ctx, "at-1", r); err != nil {
		t.Fatal(err)
	}
	if err := s1.CreateRefreshTokenSession(ctx, "rt-1", "at-1", r); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.GetRefreshTokenSession(ctx, "rt-1", openid.NewDefaultSession()); err != nil {
		t.Fatalf("second process reading the first one's token: %v", err)
	}

	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[i%2]
			<-start
			tx, err := s.BeginTX(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			if err := s.RotateRefreshToken(tx, "req-1", "rt-1"); err != nil {
				_ = s.Rollback(tx)
				errs[i] = err
				return
			}
			errs[i] = s.Commit(tx)
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, fosite.ErrNotFound):
			t.Errorf("rotation #%d: %v, want nil or fosite.ErrNotFound", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d rotations succeeded, want 1", wins)
	}
	if _, err := s1.GetAccessTokenSession(ctx, "at-1", nil); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("access token of the rotated refresh token: %v, want fosite.ErrNotFound", err)
	}
}

// A pool far smaller than the number of concurrent requests must queue, not
// deadlock: no method may take a second connection while its transaction
// holds one.
func TestSmallPoolManyRequests(t *testing.T) {
	t.Parallel()
	s0, _, dsn := postgrestest.NewStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pool, err := postgres.Open(ctx, dsn+"&pool_max_conns=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if got := pool.Config().MaxConns; got != 2 {
		t.Fatalf("MaxConns = %d, want the DSN's 2", got)
	}
	s := postgres.New(pool)
	c := newTestClient(t, ctx, s0, "a")

	const workers, rounds = 32, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				errs <- oneGrant(ctx, s, c, fmt.Sprintf("%d-%d", w, i))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("grant: %v", err)
		}
	}
}

// oneGrant does the storage work of a refresh: read, rotate and issue in a
// transaction, then read the new token outside it.
func oneGrant(ctx context.Context, s *postgres.Store, c *storage.Client, id string) error {
	r := newTestRequest(c, "req-"+id)
	if err := s.CreateAccessTokenSession(ctx, "at0-"+id, r); err != nil {
		return err
	}
	if err := s.CreateRefreshTokenSession(ctx, "rt0-"+id, "at0-"+id, r); err != nil {
		return err
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt0-"+id, openid.NewDefaultSession()); err != nil {
		return err
	}
	tx, err := s.BeginTX(ctx)
	if err != nil {
		return err
	}
	err = errors.Join(
		s.RotateRefreshToken(tx, r.ID, "rt0-"+id),
		s.CreateAccessTokenSession(tx, "at1-"+id, r),
		s.CreateRefreshTokenSession(tx, "rt1-"+id, "at1-"+id, r),
	)
	if _, gerr := s.GetRefreshTokenSession(tx, "rt1-"+id, openid.NewDefaultSession()); err == nil {
		err = gerr
	}
	if err != nil {
		_ = s.Rollback(tx)
		return err
	}
	if err := s.Commit(tx); err != nil {
		return err
	}
	_, err = s.GetAccessTokenSession(ctx, "at1-"+id, openid.NewDefaultSession())
	return err
}

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := postgrestest.DSN(t)
	pool, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if got := pool.Config().MaxConns; got < 8 {
		t.Errorf("default MaxConns = %d, want at least 8 (pgxpool's default of 4 starves concurrent requests)", got)
	}
	if err := postgres.New(pool).Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}

	for _, bad := range []string{
		"postgres://wxidp:s3cretpw@127.0.0.1:notaport/db",
		"postgres://wxidp:s3cretpw@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
	} {
		p, err := postgres.Open(ctx, bad)
		if err == nil {
			p.Close()
			t.Errorf("Open(%q) succeeded", bad)
			continue
		}
		if strings.Contains(err.Error(), "s3cretpw") {
			t.Errorf("Open error shows the password: %v", err)
		}
	}
}

func mustBegin(t *testing.T, ctx context.Context, s *postgres.Store) context.Context {
	t.Helper()
	tx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Rollback(tx) })
	return tx
}
