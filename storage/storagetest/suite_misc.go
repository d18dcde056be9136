package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
)

// testJTIs covers replay protection for private_key_jwt client assertions.
func testJTIs(t *testing.T, su suite) {
	su.run(t, "Known", func(t *testing.T, ctx context.Context, s storage.Store) {
		if err := s.ClientAssertionJWTValid(ctx, "jti-1"); err != nil {
			t.Fatalf("ClientAssertionJWTValid of an unknown jti: %v, want nil", err)
		}
		exp := time.Now().Add(time.Hour)
		if err := s.SetClientAssertionJWT(ctx, "jti-1", exp); err != nil {
			t.Fatalf("SetClientAssertionJWT: %v", err)
		}
		if err := s.ClientAssertionJWTValid(ctx, "jti-1"); !errors.Is(err, fosite.ErrJTIKnown) {
			t.Errorf("ClientAssertionJWTValid of a known jti: %v, want fosite.ErrJTIKnown", err)
		}
		if err := s.SetClientAssertionJWT(ctx, "jti-1", exp); !errors.Is(err, fosite.ErrJTIKnown) {
			t.Errorf("SetClientAssertionJWT of a known jti: %v, want fosite.ErrJTIKnown", err)
		}
		if err := s.ClientAssertionJWTValid(ctx, "jti-2"); err != nil {
			t.Errorf("ClientAssertionJWTValid of another jti: %v, want nil", err)
		}
	})

	// An expired assertion is rejected on its exp claim before the jti is
	// looked at, so the jti may be forgotten and reused.
	su.run(t, "Expired", func(t *testing.T, ctx context.Context, s storage.Store) {
		if err := s.SetClientAssertionJWT(ctx, "jti-1", time.Now().Add(-time.Second)); err != nil {
			t.Fatalf("SetClientAssertionJWT of an expired jti: %v", err)
		}
		if err := s.ClientAssertionJWTValid(ctx, "jti-1"); err != nil {
			t.Errorf("ClientAssertionJWTValid of an expired jti: %v, want nil", err)
		}
		if err := s.SetClientAssertionJWT(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
			t.Errorf("SetClientAssertionJWT over an expired jti: %v, want nil", err)
		}
		if err := s.ClientAssertionJWTValid(ctx, "jti-1"); !errors.Is(err, fosite.ErrJTIKnown) {
			t.Errorf("ClientAssertionJWTValid after setting it again: %v, want fosite.ErrJTIKnown", err)
		}
	})
}

func testConcurrency(t *testing.T, su suite) {
	// `serve --dev` and PostgreSQL both serve many token requests at once;
	// no write may be lost or fail because another is in flight.
	su.run(t, "Writers", func(t *testing.T, ctx context.Context, s storage.Store) {
		const n = 50
		c := mustCreateClient(t, ctx, s, "client")
		errs := parallel(n, func(i int) error {
			r := newRequest(c, fmt.Sprintf("req-%d", i))
			if err := s.CreateAccessTokenSession(ctx, fmt.Sprintf("at-%d", i), r); err != nil {
				return err
			}
			return s.CreateRefreshTokenSession(ctx, fmt.Sprintf("rt-%d", i), fmt.Sprintf("at-%d", i), r)
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("writer #%d: %v", i, err)
			}
		}
		for i := range n {
			want := fmt.Sprintf("req-%d", i)
			at, err := s.GetAccessTokenSession(ctx, fmt.Sprintf("at-%d", i), openid.NewDefaultSession())
			if err != nil || at.GetID() != want {
				t.Errorf("access token %d: %v, %v; want request %s", i, at, err, want)
			}
			rt, err := s.GetRefreshTokenSession(ctx, fmt.Sprintf("rt-%d", i), openid.NewDefaultSession())
			if err != nil || rt.GetID() != want {
				t.Errorf("refresh token %d: %v, %v; want request %s", i, rt, err, want)
			}
		}
	})

	// Readers decode into their own sessions while writers work: under -race
	// this catches a backend handing several callers the same request.
	su.run(t, "ReadersAndWriters", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		r := newRequest(c, "req-shared")
		mustCreateTokens(t, ctx, s, r, "shared")
		errs := parallel(40, func(i int) error {
			if i%2 == 0 {
				return s.CreateAccessTokenSession(ctx, fmt.Sprintf("at-w%d", i), newRequest(c, fmt.Sprintf("req-%d", i)))
			}
			got, err := s.GetAccessTokenSession(ctx, "at-shared", openid.NewDefaultSession())
			if err != nil {
				return err
			}
			// Mutating the result must not reach the store or other readers.
			got.GetGrantedScopes()[0] = "mutated"
			got.GrantScope("mutated")
			got.GetRequestForm().Set("grant_type", "mutated")
			got.GetSession().(*openid.DefaultSession).Subject = "mutated"
			return nil
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("call #%d: %v", i, err)
			}
		}
		sess := openid.NewDefaultSession()
		got, err := s.GetAccessTokenSession(ctx, "at-shared", sess)
		if err != nil {
			t.Fatalf("GetAccessTokenSession: %v", err)
		}
		checkRequest(t, got, r)
		checkSession(t, sess, r.Session.(*openid.DefaultSession))
	})
}
