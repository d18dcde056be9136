package storagetest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
)

func testAuthorizeCode(t *testing.T, su suite) {
	// fosite answers code reuse by revoking every token of the request, and
	// needs the request to know which.
	su.run(t, "InvalidatedReturnsRequest", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		want := newRequest(c, "req-1")
		for _, code := range []string{"code-1", "code-2"} {
			if err := s.CreateAuthorizeCodeSession(ctx, code, want); err != nil {
				t.Fatalf("CreateAuthorizeCodeSession: %v", err)
			}
		}
		if err := s.InvalidateAuthorizeCodeSession(ctx, "code-1"); err != nil {
			t.Fatalf("InvalidateAuthorizeCodeSession: %v", err)
		}
		sess := openid.NewDefaultSession()
		got, err := s.GetAuthorizeCodeSession(ctx, "code-1", sess)
		if !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
			t.Fatalf("GetAuthorizeCodeSession of a used code: %v, want fosite.ErrInvalidatedAuthorizeCode", err)
		}
		checkRequest(t, got, want)
		checkSession(t, sess, want.Session.(*openid.DefaultSession))
		if _, err := s.GetAuthorizeCodeSession(ctx, "code-2", nil); err != nil {
			t.Errorf("GetAuthorizeCodeSession of another code: %v, want nil", err)
		}
	})

	// fosite reads the code before its transaction and takes a successful
	// invalidation for the first use: only a conditional invalidation keeps
	// concurrent exchanges of one code from each getting tokens.
	su.run(t, "InvalidateOnce", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		if err := s.CreateAuthorizeCodeSession(ctx, "code-1", newRequest(c, "req-1")); err != nil {
			t.Fatalf("CreateAuthorizeCodeSession: %v", err)
		}
		const n = 8
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { errs <- s.InvalidateAuthorizeCodeSession(ctx, "code-1") })
		}
		wg.Wait()
		close(errs)
		won := 0
		for err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode):
				t.Errorf("a losing invalidation: %v, want fosite.ErrInvalidatedAuthorizeCode", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d of %d concurrent invalidations succeeded, want 1", won, n)
		}
		if err := s.InvalidateAuthorizeCodeSession(ctx, "unknown"); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("invalidating an unknown code: %v, want fosite.ErrNotFound", err)
		}
	})
}

func testRefreshToken(t *testing.T, su suite) {
	su.run(t, "InactiveReturnsRequest", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		want := newRequest(c, "req-1")
		if err := s.CreateRefreshTokenSession(ctx, "rt-1", "at-1", want); err != nil {
			t.Fatalf("CreateRefreshTokenSession: %v", err)
		}
		if err := s.RotateRefreshToken(ctx, "req-1", "rt-1"); err != nil {
			t.Fatalf("RotateRefreshToken: %v", err)
		}
		sess := openid.NewDefaultSession()
		got, err := s.GetRefreshTokenSession(ctx, "rt-1", sess)
		if !errors.Is(err, fosite.ErrInactiveToken) {
			t.Fatalf("GetRefreshTokenSession of a rotated token: %v, want fosite.ErrInactiveToken", err)
		}
		// fosite dereferences this request to revoke the chain.
		checkRequest(t, got, want)
		checkSession(t, sess, want.Session.(*openid.DefaultSession))
	})

	su.run(t, "RotateDeactivatesOnlyPresentedToken", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		r := newRequest(c, "req-1")
		other := newRequest(c, "req-2")
		mustCreateTokens(t, ctx, s, r, "1", "2")
		mustCreateTokens(t, ctx, s, other, "3")
		if err := s.RotateRefreshToken(ctx, "req-1", "rt-1"); err != nil {
			t.Fatalf("RotateRefreshToken: %v", err)
		}
		checkTokens(t, ctx, s, map[string]error{
			"rt-1": fosite.ErrInactiveToken,
			"at-1": fosite.ErrNotFound, // issued together with rt-1
			"rt-2": nil,
			"at-2": nil,
			"rt-3": nil,
			"at-3": nil,
		})
	})

	su.run(t, "RotateInactiveOrUnknown", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1", "2")
		if err := s.RotateRefreshToken(ctx, "req-1", "rt-1"); err != nil {
			t.Fatalf("RotateRefreshToken: %v", err)
		}
		if err := s.RotateRefreshToken(ctx, "req-1", "rt-1"); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("RotateRefreshToken of an inactive token: %v, want fosite.ErrNotFound", err)
		}
		if err := s.RotateRefreshToken(ctx, "req-1", "rt-nope"); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("RotateRefreshToken of an unknown token: %v, want fosite.ErrNotFound", err)
		}
		// A signature presented under another request ID is not that token.
		if err := s.RotateRefreshToken(ctx, "req-other", "rt-2"); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("RotateRefreshToken with a foreign request ID: %v, want fosite.ErrNotFound", err)
		}
		checkTokens(t, ctx, s, map[string]error{"rt-2": nil, "at-2": nil})
	})

	// Parallel refreshes with one token must issue one new token, not one per
	// request (fosite's MemoryStore double-issues, then revokes the winner).
	// fosite rotates inside a transaction, so both ways are covered.
	for _, inTx := range []bool{false, true} {
		name := "ConcurrentRotate"
		if inTx {
			name += "InTx"
		}
		su.run(t, name, func(t *testing.T, ctx context.Context, s storage.Store) {
			c := mustCreateClient(t, ctx, s, "client")
			mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1")
			wins := rotateConcurrently(t, ctx, s, 20, inTx)
			if wins != 1 {
				t.Errorf("%d concurrent rotations of one token succeeded, want exactly 1", wins)
			}
			checkTokens(t, ctx, s, map[string]error{"rt-1": fosite.ErrInactiveToken, "at-1": fosite.ErrNotFound})
		})
	}
}

// rotateConcurrently rotates refresh token rt-1 of req-1 from n goroutines
// at once, each in its own transaction when inTx (as fosite does), and
// returns how many succeeded. Losers must see fosite.ErrNotFound, or a
// serialization failure, which fosite turns into a retryable error.
func rotateConcurrently(t *testing.T, ctx context.Context, s storage.Store, n int, inTx bool) int {
	t.Helper()
	errs := parallel(n, func(int) error {
		if !inTx {
			return s.RotateRefreshToken(ctx, "req-1", "rt-1")
		}
		txCtx, err := s.BeginTX(ctx)
		if err != nil {
			return err
		}
		if err := s.RotateRefreshToken(txCtx, "req-1", "rt-1"); err != nil {
			_ = s.Rollback(txCtx)
			return err
		}
		return s.Commit(txCtx)
	})
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, fosite.ErrNotFound) && !errors.Is(err, fosite.ErrSerializationFailure):
			t.Errorf("rotation #%d: %v, want nil, fosite.ErrNotFound or fosite.ErrSerializationFailure", i, err)
		}
	}
	return wins
}

func testRevocation(t *testing.T, su suite) {
	su.run(t, "ByRequestID", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1", "2")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-2"), "3")

		if err := s.RevokeRefreshToken(ctx, "req-1"); err != nil {
			t.Fatalf("RevokeRefreshToken: %v", err)
		}
		checkTokens(t, ctx, s, map[string]error{
			"rt-1": fosite.ErrInactiveToken,
			"rt-2": fosite.ErrInactiveToken,
			"at-1": nil, // refresh revocation leaves access tokens to RevokeAccessToken
			"at-2": nil,
			"rt-3": nil,
			"at-3": nil,
		})

		if err := s.RevokeAccessToken(ctx, "req-1"); err != nil {
			t.Fatalf("RevokeAccessToken: %v", err)
		}
		checkTokens(t, ctx, s, map[string]error{
			"at-1": fosite.ErrNotFound,
			"at-2": fosite.ErrNotFound,
			"rt-3": nil,
			"at-3": nil,
		})

		// Revoking again is what fosite does on every reuse: still no error.
		if err := s.RevokeRefreshToken(ctx, "req-1"); err != nil {
			t.Errorf("second RevokeRefreshToken: %v", err)
		}
		if err := s.RevokeAccessToken(ctx, "req-1"); err != nil {
			t.Errorf("second RevokeAccessToken: %v", err)
		}
	})

	su.run(t, "NothingMatches", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1")
		if err := s.RevokeRefreshToken(ctx, "req-nope"); err != nil {
			t.Errorf("RevokeRefreshToken of an unknown request: %v, want nil", err)
		}
		if err := s.RevokeAccessToken(ctx, "req-nope"); err != nil {
			t.Errorf("RevokeAccessToken of an unknown request: %v, want nil", err)
		}
		checkTokens(t, ctx, s, map[string]error{"rt-1": nil, "at-1": nil})
	})
}

// mustCreateTokens stores, for each suffix n, access token at-n and refresh
// token rt-n issued together for r, as fosite does.
func mustCreateTokens(t *testing.T, ctx context.Context, s storage.Store, r fosite.Requester, suffixes ...string) {
	t.Helper()
	for _, n := range suffixes {
		if err := s.CreateAccessTokenSession(ctx, "at-"+n, r); err != nil {
			t.Fatalf("CreateAccessTokenSession(at-%s): %v", n, err)
		}
		if err := s.CreateRefreshTokenSession(ctx, "rt-"+n, "at-"+n, r); err != nil {
			t.Fatalf("CreateRefreshTokenSession(rt-%s): %v", n, err)
		}
	}
}

// checkTokens reads each signature (at-* as access token, rt-* as refresh
// token) and compares the error with the one expected.
func checkTokens(t *testing.T, ctx context.Context, s storage.Store, want map[string]error) {
	t.Helper()
	for sig, wantErr := range want {
		var (
			r   fosite.Requester
			err error
		)
		if sig[:3] == "at-" {
			r, err = s.GetAccessTokenSession(ctx, sig, openid.NewDefaultSession())
		} else {
			r, err = s.GetRefreshTokenSession(ctx, sig, openid.NewDefaultSession())
		}
		if !errors.Is(err, wantErr) {
			t.Errorf("get %s: %v, want %v", sig, err, wantErr)
			continue
		}
		if (err == nil || errors.Is(err, fosite.ErrInactiveToken)) && r == nil {
			t.Errorf("get %s returned no request", sig)
		}
	}
}
