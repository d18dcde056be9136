package postgres_test

import (
	"context"
	"errors"
	"fmt"
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
	cluster, s := hangableStore(t, "")
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
	waitActive(t, s, "rt0")
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

// hangableStore returns a store with a one-second deadline on a cluster of
// the test's own, which it may hang; params are added to the pool's DSN.
func hangableStore(t *testing.T, params string) (*pgcluster.Cluster, *postgres.Store) {
	t.Helper()
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
	pool, err := postgres.OpenTimeout(ctx, cluster.DSN()+params, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := postgres.New(pool, postgres.WithTimeout(timeout))
	t.Cleanup(s.Close)

	return cluster, s
}

// TestBatchedRotationCrossedByHang: the same for a rotation made in one
// statement with its new tokens (RotateAndIssue): the statement and its
// implicit COMMIT reach the hung server and commit when it resumes, after
// the caller answered 503; the rotation is settled the same way.
func TestBatchedRotationCrossedByHang(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// One connection, which has the statement prepared: what the hang
	// meets is the statement itself, not its preparation.
	cluster, s := hangableStore(t, "&pool_max_conns=1")
	req := seedGrant(t, s)
	if written, err := rotate(ctx, s, req, "rt0", "at1", "rt1"); err != nil || !written {
		t.Fatalf("rotating rt0: written %v, %v", written, err)
	}

	cluster.Hang()
	written, err := rotate(ctx, s, req, "rt1", "at2", "rt2")
	cluster.Resume()
	if written || !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("rotation sent to a hung database: written %v, %v; want ErrUnavailable", written, err)
	}
	waitActive(t, s, "rt1")
	if st, stored := tokenState(t, s, "rt2", "at2"); st != "absent" || stored {
		t.Errorf("tokens no answer handed out: refresh %s, access stored %v; want both gone", st, stored)
	}
	if written, err := rotate(ctx, s, req, "rt1", "at3", "rt3"); err != nil || !written {
		t.Errorf("rotating rt1 again: written %v, %v", written, err)
	}
}

// TestBatchedExchangeCrossedByHang: a code exchange made in one statement
// with its tokens (ExchangeAndIssue) whose implicit COMMIT reaches a hung
// server commits when it resumes, after the caller answered 503. The client
// still holds the code and retries it; without settling, the retry found
// the code used, a replay that revokes the login. The exchange is settled
// as a rotation is: the code is unused again and the tokens no answer
// handed out are gone.
func TestBatchedExchangeCrossedByHang(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster, s := hangableStore(t, "&pool_max_conns=1")
	seedCodes(t, s, 2, true)
	req := func(i int) *fosite.Request {
		return grantRequest(&storage.Client{ID: "web"}, fmt.Sprintf("grant-%d", i))
	}
	// Prepares the statement on the one connection.
	if written, err := exchange(ctx, s, req(0), "code-0", "at-0", "rt-0"); err != nil || !written {
		t.Fatalf("exchanging code-0: written %v, %v", written, err)
	}

	cluster.Hang()
	written, err := exchange(ctx, s, req(1), "code-1", "at-1", "rt-1")
	cluster.Resume()
	if written || !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("exchange sent to a hung database: written %v, %v; want ErrUnavailable", written, err)
	}
	waitCodeActive(t, s, "code-1")
	checkHungCommit(t, s)
	if st, stored := tokenState(t, s, "rt-1", "at-1"); st != "absent" || stored {
		t.Errorf("tokens no answer handed out: refresh %s, access stored %v; want both gone", st, stored)
	}
	if written, err := exchange(ctx, s, req(1), "code-1", "at-2", "rt-2"); err != nil || !written {
		t.Errorf("the client's retry of code-1: written %v, %v", written, err)
	}
}

// TestExchangeCommitCrossedByHang: the same for an exchange in fosite's
// transaction (the fallback path): InvalidateAuthorizeCodeSession and the
// token inserts, then a COMMIT that meets the hang.
func TestExchangeCommitCrossedByHang(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// One connection, which has the statements prepared (by a first
	// exchange): what the hang meets is the COMMIT, not a preparation.
	cluster, s := hangableStore(t, "&pool_max_conns=1")
	seedCodes(t, s, 2, true)
	exchangeInTx := func(i int, hang bool) error {
		req := grantRequest(&storage.Client{ID: "web"}, fmt.Sprintf("grant-%d", i))
		tx, err := s.BeginTX(ctx)
		if err != nil {
			return err
		}
		if err := s.InvalidateAuthorizeCodeSession(tx, fmt.Sprintf("code-%d", i)); err != nil {
			return errors.Join(err, s.Rollback(tx))
		}
		if err := s.CreateAccessTokenSession(tx, fmt.Sprintf("at-%d", i), req); err != nil {
			return errors.Join(err, s.Rollback(tx))
		}
		if err := s.CreateRefreshTokenSession(tx, fmt.Sprintf("rt-%d", i), fmt.Sprintf("at-%d", i), req); err != nil {
			return errors.Join(err, s.Rollback(tx))
		}
		if hang {
			cluster.Hang()
			defer cluster.Resume()
		}
		return s.Commit(tx)
	}
	if err := exchangeInTx(0, false); err != nil {
		t.Fatal(err)
	}
	if err := exchangeInTx(1, true); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("COMMIT to a hung database: %v, want ErrUnavailable", err)
	}
	waitCodeActive(t, s, "code-1")
	checkHungCommit(t, s)
	if st, stored := tokenState(t, s, "rt-1", "at-1"); st != "absent" || stored {
		t.Errorf("tokens no answer handed out: refresh %s, access stored %v; want both gone", st, stored)
	}
	if err := exchangeInTx(1, false); err != nil {
		t.Errorf("the client's retry of code-1: %v", err)
	}
}

// checkHungCommit reports whether the hung COMMIT landed when the server
// resumed (and settling undid it) or not (settling terminated the backend
// before it read the COMMIT, which happens under load): either way the
// client's retry must work, which the caller checks next.
func checkHungCommit(t *testing.T, s *postgres.Store) {
	t.Helper()
	switch n := postgres.ExchangesUndone(s); n {
	case 0:
		t.Log("the hung COMMIT did not land: nothing to undo")
	case 1:
		t.Log("the hung COMMIT landed and was undone")
	default:
		t.Errorf("exchanges undone: %d, want at most 1", n)
	}
}

// checkUndone fails the test unless s's settling undid want exchanges.
func checkUndone(t *testing.T, s *postgres.Store, want int64) {
	t.Helper()
	if got := postgres.ExchangesUndone(s); got != want {
		t.Errorf("exchanges undone: %d, want %d", got, want)
	}
}

// waitCodeActive waits until code reads as unused, allowing ErrUnavailable
// while its exchange is settled.
func waitCodeActive(t *testing.T, s *postgres.Store, code string) {
	t.Helper()
	waitSettled(t, "code "+code, func() error {
		_, err := s.GetAuthorizeCodeSession(context.Background(), code, openid.NewDefaultSession())
		return err
	})
}
