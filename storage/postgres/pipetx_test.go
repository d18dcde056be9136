package postgres_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// roundTrips counts the statements and batches sent: one round trip each
// (statement preparation aside, which happens once per connection).
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func tracedStore(t *testing.T) (*postgres.Store, *roundTrips) {
	t.Helper()
	return tracedStoreWith(t, postgres.WithoutClientCache())
}

// tracedStoreWith is tracedStore with opts instead of no client cache.
func tracedStoreWith(t *testing.T, opts ...postgres.Option) (*postgres.Store, *roundTrips) {
	t.Helper()
	rt := &roundTrips{}
	_, _, dsn := postgrestest.NewStore(t)
	pool, err := postgres.OpenTimeout(context.Background(), dsn, 5*time.Second, postgres.WithTracer(rt))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := postgres.New(pool, opts...)
	t.Cleanup(s.Close)
	return s, rt
}

func grantRequest(client *storage.Client, id string) *fosite.Request {
	sess := openid.NewDefaultSession()
	sess.Subject = "sub-" + id
	sess.SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour))
	sess.SetExpiresAt(fosite.RefreshToken, time.Now().Add(time.Hour))
	return &fosite.Request{ID: id, RequestedAt: time.Now().UTC(), Client: storage.NewOAuthClient(client),
		GrantedScope: fosite.Arguments{"openid", "offline_access"}, Session: sess}
}

// seedGrant stores client "mp" and grant "grant-1" with access token "at0"
// and refresh token "rt0", and returns the grant's request.
func seedGrant(t *testing.T, s *postgres.Store) *fosite.Request {
	t.Helper()
	ctx := context.Background()
	client := &storage.Client{ID: "mp"}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	req := grantRequest(client, "grant-1")
	if err := s.CreateAccessTokenSession(ctx, "at0", req); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRefreshTokenSession(ctx, "rt0", "at0", req); err != nil {
		t.Fatal(err)
	}
	return req
}

// TestGrantTransactionRoundTrips: a WeChat login's and a refresh's
// transactions take two round trips each: BEGIN goes with the first
// statement, the token inserts with COMMIT. Before, each statement was one
// (five per transaction), and on a loaded server each costs a write and two
// wake-ups, more than the statement itself.
func TestGrantTransactionRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rt := tracedStore(t)
	client := &storage.Client{ID: "mp"}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	login := func(i int) int64 {
		before := rt.n.Load()
		req := grantRequest(client, "login-"+string(rune('a'+i)))
		tx, err := s.BeginTX(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Rollback(tx) }) // after a failure, frees the connection
		if _, err := s.LinkWeChatIdentity(tx, &storage.WeChatIdentity{AppID: "wxapp", OpenID: "o-1", SessionKey: []byte("k")}, "user-1"); err != nil {
			t.Fatal(err)
		}
		at, rtk := "at-"+req.ID, "rt-"+req.ID
		if err := s.CreateAccessTokenSession(tx, at, req); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateRefreshTokenSession(tx, rtk, at, req); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(tx); err != nil {
			t.Fatal(err)
		}
		return rt.n.Load() - before
	}
	login(0) // the first login creates the user and prepares the statements
	if n := login(1); n != 2 {
		t.Errorf("a returning user's login transaction took %d round trips, want 2", n)
	}

	refresh := func(presented, next string) int64 {
		before := rt.n.Load()
		req := grantRequest(client, "login-b")
		tx, err := s.BeginTX(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Rollback(tx) }) // after a failure, frees the connection
		if err := s.RotateRefreshToken(tx, req.ID, presented); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAccessTokenSession(tx, "at-"+next, req); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateRefreshTokenSession(tx, next, "at-"+next, req); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(tx); err != nil {
			t.Fatal(err)
		}
		return rt.n.Load() - before
	}
	refresh("rt-login-b", "rt-2")
	if n := refresh("rt-2", "rt-3"); n != 2 {
		t.Errorf("a refresh transaction took %d round trips, want 2", n)
	}
	// What was deferred was committed.
	if _, err := s.GetRefreshTokenSession(ctx, "rt-3", openid.NewDefaultSession()); err != nil {
		t.Errorf("the last refresh token: %v", err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at-rt-3", openid.NewDefaultSession()); err != nil {
		t.Errorf("the last access token: %v", err)
	}
}

// TestGrantTransactionDeferredFailure: an insert sent with COMMIT that
// fails fails the Commit, and the whole transaction is undone: the
// rotation before it too. A read in the transaction sees its earlier,
// deferred writes.
func TestGrantTransactionDeferredFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := tracedStore(t)
	req := seedGrant(t, s)

	tx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Rollback(tx) })
	if err := s.RotateRefreshToken(tx, req.ID, "rt0"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessTokenSession(tx, "at1", req); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(tx, "at1", openid.NewDefaultSession()); err != nil {
		t.Errorf("the transaction's own deferred insert, read back inside it: %v", err)
	}
	// A signature that exists already: the insert fails at COMMIT.
	if err := s.CreateRefreshTokenSession(tx, "rt0", "at1", req); err != nil {
		t.Fatalf("a deferred insert reported %v before the commit", err)
	}
	err = s.Commit(tx)
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("Commit with a failing deferred insert: %v, want ErrAlreadyExists", err)
	}
	if err := s.Rollback(tx); err != nil {
		t.Errorf("fosite's Rollback after the failed Commit: %v", err)
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt0", openid.NewDefaultSession()); err != nil {
		t.Errorf("the rotation of the failed transaction was not undone: %v", err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at1", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("the failed transaction's access token: %v, want not found", err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at0", openid.NewDefaultSession()); err != nil {
		t.Errorf("the access token the undone rotation had deleted: %v", err)
	}
}
