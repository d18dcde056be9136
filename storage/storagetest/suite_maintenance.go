package storagetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
)

// purgeTables are the tables PurgeExpired reports on: both backends key
// storage.PurgeStats by the PostgreSQL table names.
var purgeTables = []string{
	"oauth2_access_tokens", "oauth2_refresh_tokens", "oauth2_authorization_codes",
	"oauth2_pkce_requests", "oauth2_oidc_sessions", "client_assertion_jtis", "wechat_codes",
	"login_tickets", "browser_sessions",
}

// requestExpiring is newRequest with every token of the session expiring at
// exp; a zero exp sets no expiry.
func requestExpiring(c *storage.Client, id string, exp time.Time) *fosite.Request {
	r := newRequest(c, id)
	sess := openid.NewDefaultSession()
	sess.Subject = "sub-" + id
	if !exp.IsZero() {
		for _, tt := range []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken, fosite.AuthorizeCode, fosite.IDToken} {
			sess.SetExpiresAt(tt, exp)
		}
	}
	r.Session = sess
	return r
}

// purge calls PurgeExpired and fails the test unless it deleted exactly want
// per table (tables not in want: 0).
func purge(t *testing.T, ctx context.Context, s storage.Store, expiredBefore, inactiveBefore time.Time, batch int, want map[string]int) {
	t.Helper()
	got, err := s.PurgeExpired(ctx, expiredBefore, inactiveBefore, batch)
	if err != nil {
		t.Fatalf("PurgeExpired: %v", err)
	}
	full := map[string]int{}
	for _, table := range purgeTables {
		full[table] = want[table]
	}
	if !maps.Equal(map[string]int(got), full) {
		t.Errorf("PurgeExpired(batch %d) deleted %v, want %v", batch, got, full)
	}
}

func testPurge(t *testing.T, su suite) {
	// Only rows past their expiry, and refresh tokens deactivated before the
	// inactive cutoff, go; a row with no expiry never expires.
	su.run(t, "DeletesOnlyExpired", func(t *testing.T, ctx context.Context, s storage.Store) {
		now := time.Now()
		past, future := now.Add(-time.Hour), now.Add(time.Hour)
		c := mustCreateClient(t, ctx, s, "client")
		old, live, forever := requestExpiring(c, "req-old", past), requestExpiring(c, "req-live", future),
			requestExpiring(c, "req-forever", time.Time{})
		rotated, revoked := requestExpiring(c, "req-rot", future), requestExpiring(c, "req-rev", future)
		for _, step := range []struct {
			what string
			err  error
		}{
			{"at-old", s.CreateAccessTokenSession(ctx, "at-old", old)},
			{"at-live", s.CreateAccessTokenSession(ctx, "at-live", live)},
			{"at-forever", s.CreateAccessTokenSession(ctx, "at-forever", forever)},
			{"rt-old", s.CreateRefreshTokenSession(ctx, "rt-old", "at-none", old)},
			{"rt-live", s.CreateRefreshTokenSession(ctx, "rt-live", "at-none", live)},
			{"rt-rot", s.CreateRefreshTokenSession(ctx, "rt-rot", "at-none", rotated)},
			{"rt-rot-forever", s.CreateRefreshTokenSession(ctx, "rt-rot-forever", "at-none", forever)},
			{"rt-rev", s.CreateRefreshTokenSession(ctx, "rt-rev", "at-none", revoked)},
			{"rotate rt-rot", s.RotateRefreshToken(ctx, "req-rot", "rt-rot")},
			{"rotate rt-rot-forever", s.RotateRefreshToken(ctx, "req-forever", "rt-rot-forever")},
			{"revoke req-rev", s.RevokeRefreshToken(ctx, "req-rev")},
			{"code-old", s.CreateAuthorizeCodeSession(ctx, "code-old", old)},
			{"code-live", s.CreateAuthorizeCodeSession(ctx, "code-live", live)},
			{"code-used", s.CreateAuthorizeCodeSession(ctx, "code-used", live)},
			{"invalidate code-used", s.InvalidateAuthorizeCodeSession(ctx, "code-used")},
			{"pkce-old", s.CreatePKCERequestSession(ctx, "pkce-old", old)},
			{"pkce-live", s.CreatePKCERequestSession(ctx, "pkce-live", live)},
			{"oidc-old", s.CreateOpenIDConnectSession(ctx, "oidc-old", old)},
			{"oidc-live", s.CreateOpenIDConnectSession(ctx, "oidc-live", live)},
			// Live first: setting a jti or claiming a code drops expired ones.
			{"jti-live", s.SetClientAssertionJWT(ctx, "jti-live", future)},
			{"jti-old", s.SetClientAssertionJWT(ctx, "jti-old", past)},
			{"wx-live", s.ClaimWeChatCode(ctx, appA, "wx-live", future)},
			{"wx-old", s.ClaimWeChatCode(ctx, appA, "wx-old", past)},
		} {
			if step.err != nil {
				t.Fatalf("%s: %v", step.what, step.err)
			}
		}

		// Deactivated within the last hour: kept, so reuse is still detected.
		purge(t, ctx, s, now, past, 100, map[string]int{
			"oauth2_access_tokens": 1, "oauth2_refresh_tokens": 1, "oauth2_authorization_codes": 1,
			"oauth2_pkce_requests": 1, "oauth2_oidc_sessions": 1, "client_assertion_jtis": 1, "wechat_codes": 1,
		})
		checkTokens(t, ctx, s, map[string]error{
			"at-old": fosite.ErrNotFound, "at-live": nil, "at-forever": nil,
			"rt-old": fosite.ErrNotFound, "rt-live": nil,
			"rt-rot": fosite.ErrInactiveToken, "rt-rot-forever": fosite.ErrInactiveToken, "rt-rev": fosite.ErrInactiveToken,
		})
		for code, want := range map[string]error{"code-old": fosite.ErrNotFound, "code-live": nil, "code-used": fosite.ErrInvalidatedAuthorizeCode} {
			if _, err := s.GetAuthorizeCodeSession(ctx, code, openid.NewDefaultSession()); !errors.Is(err, want) {
				t.Errorf("GetAuthorizeCodeSession(%s) after purge: %v, want %v", code, err, want)
			}
		}
		for sig, want := range map[string]error{"pkce-old": fosite.ErrNotFound, "pkce-live": nil} {
			if _, err := s.GetPKCERequestSession(ctx, sig, openid.NewDefaultSession()); !errors.Is(err, want) {
				t.Errorf("GetPKCERequestSession(%s) after purge: %v, want %v", sig, err, want)
			}
		}
		for code, want := range map[string]error{"oidc-old": fosite.ErrNotFound, "oidc-live": nil} {
			if _, err := s.GetOpenIDConnectSession(ctx, code, requestExpiring(c, "probe", time.Time{})); !errors.Is(err, want) {
				t.Errorf("GetOpenIDConnectSession(%s) after purge: %v, want %v", code, err, want)
			}
		}
		if err := s.SetClientAssertionJWT(ctx, "jti-live", future); !errors.Is(err, fosite.ErrJTIKnown) {
			t.Errorf("SetClientAssertionJWT(jti-live) after purge: %v, want fosite.ErrJTIKnown", err)
		}
		if err := s.ClaimWeChatCode(ctx, appA, "wx-live", future); !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("ClaimWeChatCode(wx-live) after purge: %v, want ErrAlreadyExists", err)
		}

		// Now the cutoff passes the deactivations: rotated and revoked tokens
		// go, expiry or not; the active one stays.
		purge(t, ctx, s, now, future, 100, map[string]int{"oauth2_refresh_tokens": 3})
		checkTokens(t, ctx, s, map[string]error{
			"rt-rot": fosite.ErrNotFound, "rt-rot-forever": fosite.ErrNotFound, "rt-rev": fosite.ErrNotFound,
			"rt-live": nil, "at-live": nil, "at-forever": nil,
		})
		purge(t, ctx, s, now, future, 100, nil)
	})

	// Every table deletes at most batch rows per call; callers loop until
	// nothing is left. Refresh tokens fill one batch from both conditions.
	su.run(t, "Batch", func(t *testing.T, ctx context.Context, s storage.Store) {
		now := time.Now()
		c := mustCreateClient(t, ctx, s, "client")
		live := requestExpiring(c, "req-live", now.Add(time.Hour))
		for i := range 7 {
			r := requestExpiring(c, fmt.Sprintf("req-%d", i), now.Add(-time.Duration(i+1)*time.Minute))
			if err := s.CreateAccessTokenSession(ctx, fmt.Sprintf("at-%d", i), r); err != nil {
				t.Fatal(err)
			}
			if i < 5 {
				if err := s.CreateAuthorizeCodeSession(ctx, fmt.Sprintf("code-%d", i), r); err != nil {
					t.Fatal(err)
				}
			}
			if i < 2 {
				if err := s.CreateRefreshTokenSession(ctx, fmt.Sprintf("rt-exp-%d", i), "at-none", r); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := range 2 {
			sig := fmt.Sprintf("rt-inactive-%d", i)
			if err := s.CreateRefreshTokenSession(ctx, sig, "at-none", live); err != nil {
				t.Fatal(err)
			}
			if err := s.RotateRefreshToken(ctx, "req-live", sig); err != nil {
				t.Fatal(err)
			}
		}
		mustCreateTokens(t, ctx, s, live, "live")
		after := time.Now().Add(time.Minute)
		for i, want := range []map[string]int{
			{"oauth2_access_tokens": 3, "oauth2_authorization_codes": 3, "oauth2_refresh_tokens": 3},
			{"oauth2_access_tokens": 3, "oauth2_authorization_codes": 2, "oauth2_refresh_tokens": 1},
			{"oauth2_access_tokens": 1},
			nil,
		} {
			t.Logf("purge round %d", i+1)
			purge(t, ctx, s, now, after, 3, want)
		}
		checkTokens(t, ctx, s, map[string]error{
			"at-0": fosite.ErrNotFound, "at-6": fosite.ErrNotFound, "rt-exp-1": fosite.ErrNotFound,
			"rt-inactive-1": fosite.ErrNotFound, "at-live": nil, "rt-live": nil,
		})
		if _, err := s.PurgeExpired(ctx, now, now, 0); err == nil {
			t.Error("PurgeExpired with batch 0 succeeded, want an error")
		}
	})

	su.run(t, "RolledBack", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		old := requestExpiring(c, "req-old", time.Now().Add(-time.Hour))
		mustCreateTokens(t, ctx, s, old, "old")
		tx, err := s.BeginTX(ctx)
		if err != nil {
			t.Fatal(err)
		}
		purge(t, tx, s, time.Now(), time.Now(), 10, map[string]int{"oauth2_access_tokens": 1, "oauth2_refresh_tokens": 1})
		if err := s.Rollback(tx); err != nil {
			t.Fatal(err)
		}
		checkTokens(t, ctx, s, map[string]error{"at-old": nil, "rt-old": nil})
	})
}

// errNoLease stands for a lease not granted in parallel calls.
var errNoLease = errors.New("lease not granted")

func tryLease(ctx context.Context, s storage.Store, name, holder string, now time.Time, d time.Duration) error {
	ok, err := s.TryLease(ctx, name, holder, now, now.Add(d))
	if err == nil && !ok {
		err = errNoLease
	}
	return err
}

func checkTryLease(t *testing.T, ctx context.Context, s storage.Store, name, holder string, now time.Time, d time.Duration, want bool) {
	t.Helper()
	err := tryLease(ctx, s, name, holder, now, d)
	if got := err == nil; got != want || (err != nil && !errors.Is(err, errNoLease)) {
		t.Errorf("TryLease(%s, %s, now %v, for %v): %v, want granted = %v", name, holder, now.Format(time.TimeOnly), d, err, want)
	}
}

func testLeases(t *testing.T, su suite) {
	su.run(t, "TakeRenewExpireRelease", func(t *testing.T, ctx context.Context, s storage.Store) {
		t0 := usec(time.Now())
		const d = 30 * time.Second
		checkTryLease(t, ctx, s, "janitor", "a", t0, d, true)
		checkTryLease(t, ctx, s, "janitor", "b", t0.Add(10*time.Second), d, false)
		checkTryLease(t, ctx, s, "other", "b", t0, d, true) // per name
		// Re-entrant: the holder renews, until t0+40s.
		checkTryLease(t, ctx, s, "janitor", "a", t0.Add(10*time.Second), d, true)
		checkTryLease(t, ctx, s, "janitor", "b", t0.Add(39*time.Second), d, false)
		// Run out: the holder died or hangs, someone else takes over.
		checkTryLease(t, ctx, s, "janitor", "b", t0.Add(40*time.Second), d, true)
		checkTryLease(t, ctx, s, "janitor", "a", t0.Add(41*time.Second), d, false)
		// Only the holder's release counts.
		if err := s.ReleaseLease(ctx, "janitor", "a"); err != nil {
			t.Errorf("ReleaseLease by a non-holder: %v, want nil", err)
		}
		checkTryLease(t, ctx, s, "janitor", "c", t0.Add(41*time.Second), d, false)
		if err := s.ReleaseLease(ctx, "janitor", "b"); err != nil {
			t.Errorf("ReleaseLease by the holder: %v", err)
		}
		checkTryLease(t, ctx, s, "janitor", "c", t0.Add(41*time.Second), d, true)
		if err := s.ReleaseLease(ctx, "never-taken", "a"); err != nil {
			t.Errorf("ReleaseLease of an unknown lease: %v, want nil", err)
		}
		checkTryLease(t, ctx, s, "other", "a", t0.Add(time.Second), d, false)
	})

	// Janitors in several processes start together: one gets the lease.
	su.run(t, "Concurrent", func(t *testing.T, ctx context.Context, s storage.Store) {
		now := time.Now()
		errs := parallel(20, func(i int) error {
			return tryLease(ctx, s, "janitor", fmt.Sprintf("holder-%d", i), now, time.Minute)
		})
		checkOneWins(t, "TryLease", errs, errNoLease)
		for i, err := range errs {
			if err == nil {
				checkTryLease(t, ctx, s, "janitor", fmt.Sprintf("holder-%d", i), now.Add(time.Second), time.Minute, true)
			}
		}
	})
}
