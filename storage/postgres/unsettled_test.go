package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/internal/pgcluster"
	"github.com/wxidp/wxidp/migrations"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
)

// TestRotationCommitCrossedByHang: a refresh rotation's COMMIT sent to a
// database that hangs reaches the server's socket buffer and commits when
// the database is resumed, although the caller gave up and answered 503.
// The client still holds the refresh token it presented; before, its retry
// found that token rotated and reuse detection ended the login (CI saw it in
// TestDatabaseFaults). The store settles such a rotation: the presented
// token is active again and the tokens no answer handed out are gone, and
// until then it never calls the token reused.
func TestRotationCommitCrossedByHang(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster := pgcluster.New(t)
	db, err := migrations.OpenDB(cluster.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	db.Close()
	const timeout = time.Second
	pool, err := postgres.OpenTimeout(ctx, cluster.DSN(), timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := postgres.New(pool, postgres.WithTimeout(timeout))
	t.Cleanup(s.Close)

	req := seedGrant(t, s)

	tx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RotateRefreshToken(tx, "grant-1", "rt0"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessTokenSession(tx, "at1", req); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRefreshTokenSession(tx, "rt1", "at1", req); err != nil {
		t.Fatal(err)
	}
	cluster.Hang()
	err = s.Commit(tx)
	cluster.Resume()
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("COMMIT to a hung database: %v, want ErrUnavailable", err)
	}

	// The client retries with rt0, as the 503 told it to.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := s.GetRefreshTokenSession(ctx, "rt0", openid.NewDefaultSession())
		if err == nil {
			break
		}
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("the refresh token the client still holds: %v, want it active (or unavailable while settling)", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still unavailable 30 s after the database came back: %v", err)
		}
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt1", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("the refresh token no answer handed out: %v, want not found", err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at1", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("the access token no answer handed out: %v, want not found", err)
	}
	// And the chain goes on.
	tx, err = s.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RotateRefreshToken(tx, "grant-1", "rt0"); err != nil {
		t.Fatalf("rotating rt0 again: %v", err)
	}
	if err := s.Commit(tx); err != nil {
		t.Fatal(err)
	}
}
