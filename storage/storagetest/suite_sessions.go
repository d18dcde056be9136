package storagetest

import (
	"context"
	"errors"
	"testing"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
)

// sessionKind adapts one of fosite's five request stores to a common shape so
// each rule is written once and checked against all of them.
type sessionKind struct {
	name   string
	create func(ctx context.Context, s storage.Store, key string, r fosite.Requester) error
	get    func(ctx context.Context, s storage.Store, key string, sess fosite.Session) (fosite.Requester, error)
	del    func(ctx context.Context, s storage.Store, key string) error
}

var sessionKinds = []sessionKind{
	{
		name: "AccessToken",
		create: func(ctx context.Context, s storage.Store, key string, r fosite.Requester) error {
			return s.CreateAccessTokenSession(ctx, key, r)
		},
		get: func(ctx context.Context, s storage.Store, key string, sess fosite.Session) (fosite.Requester, error) {
			return s.GetAccessTokenSession(ctx, key, sess)
		},
		del: func(ctx context.Context, s storage.Store, key string) error {
			return s.DeleteAccessTokenSession(ctx, key)
		},
	},
	{
		name: "RefreshToken",
		create: func(ctx context.Context, s storage.Store, key string, r fosite.Requester) error {
			return s.CreateRefreshTokenSession(ctx, key, "at-of-"+key, r)
		},
		get: func(ctx context.Context, s storage.Store, key string, sess fosite.Session) (fosite.Requester, error) {
			return s.GetRefreshTokenSession(ctx, key, sess)
		},
		del: func(ctx context.Context, s storage.Store, key string) error {
			return s.DeleteRefreshTokenSession(ctx, key)
		},
	},
	{
		name: "AuthorizeCode",
		create: func(ctx context.Context, s storage.Store, key string, r fosite.Requester) error {
			return s.CreateAuthorizeCodeSession(ctx, key, r)
		},
		get: func(ctx context.Context, s storage.Store, key string, sess fosite.Session) (fosite.Requester, error) {
			return s.GetAuthorizeCodeSession(ctx, key, sess)
		},
		// fosite has no delete for codes (it invalidates them); expired ones
		// go to the janitor. Invalidation is checked on its own.
		del: nil,
	},
	{
		name: "PKCE",
		create: func(ctx context.Context, s storage.Store, key string, r fosite.Requester) error {
			return s.CreatePKCERequestSession(ctx, key, r)
		},
		get: func(ctx context.Context, s storage.Store, key string, sess fosite.Session) (fosite.Requester, error) {
			return s.GetPKCERequestSession(ctx, key, sess)
		},
		del: func(ctx context.Context, s storage.Store, key string) error {
			return s.DeletePKCERequestSession(ctx, key)
		},
	},
	{
		name: "OpenIDConnect",
		create: func(ctx context.Context, s storage.Store, key string, r fosite.Requester) error {
			return s.CreateOpenIDConnectSession(ctx, key, r)
		},
		// fosite passes the token request here and expects the stored
		// session to be decoded into that request's session.
		get: func(ctx context.Context, s storage.Store, key string, sess fosite.Session) (fosite.Requester, error) {
			return s.GetOpenIDConnectSession(ctx, key, &fosite.Request{Session: sess})
		},
		del: func(ctx context.Context, s storage.Store, key string) error {
			return s.DeleteOpenIDConnectSession(ctx, key)
		},
	},
}

func testSessions(t *testing.T, su suite) {
	for _, k := range sessionKinds {
		su.run(t, k.name+"/RoundTrip", func(t *testing.T, ctx context.Context, s storage.Store) {
			c := mustCreateClient(t, ctx, s, "client")
			want := newRequest(c, "req-1")
			if err := k.create(ctx, s, "sig-1", want); err != nil {
				t.Fatalf("create: %v", err)
			}
			sess := openid.NewDefaultSession()
			got, err := k.get(ctx, s, "sig-1", sess)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			checkRequest(t, got, want)
			checkSession(t, sess, want.Session.(*openid.DefaultSession))
			if got.GetSession() != fosite.Session(sess) {
				t.Errorf("request session is %p, want the session passed in (%p)", got.GetSession(), sess)
			}
		})

		// Revocation hands fosite no session to decode into.
		su.run(t, k.name+"/NilSession", func(t *testing.T, ctx context.Context, s storage.Store) {
			c := mustCreateClient(t, ctx, s, "client")
			want := newRequest(c, "req-1")
			if err := k.create(ctx, s, "sig-1", want); err != nil {
				t.Fatalf("create: %v", err)
			}
			got, err := k.get(ctx, s, "sig-1", nil)
			if err != nil {
				t.Fatalf("get with a nil session: %v", err)
			}
			checkRequest(t, got, want)
			if got.GetSession() != nil {
				t.Errorf("session = %v, want nil", got.GetSession())
			}
		})

		su.run(t, k.name+"/RequestWithoutSession", func(t *testing.T, ctx context.Context, s storage.Store) {
			c := mustCreateClient(t, ctx, s, "client")
			want := newRequest(c, "req-1")
			want.Session = nil
			if err := k.create(ctx, s, "sig-1", want); err != nil {
				t.Fatalf("create of a request without session: %v", err)
			}
			got, err := k.get(ctx, s, "sig-1", openid.NewDefaultSession())
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			checkRequest(t, got, want)
		})

		su.run(t, k.name+"/Unknown", func(t *testing.T, ctx context.Context, s storage.Store) {
			c := mustCreateClient(t, ctx, s, "client")
			if err := k.create(ctx, s, "sig-1", newRequest(c, "req-1")); err != nil {
				t.Fatalf("create: %v", err)
			}
			got, err := k.get(ctx, s, "nope", openid.NewDefaultSession())
			if !errors.Is(err, fosite.ErrNotFound) {
				t.Errorf("get of an unknown key: %v, want fosite.ErrNotFound", err)
			}
			if got != nil {
				t.Errorf("get of an unknown key returned request %v", got)
			}
			if k.del != nil {
				if err := k.del(ctx, s, "nope"); err != nil {
					t.Errorf("delete of an unknown key: %v, want nil", err)
				}
			}
		})

		if k.del == nil {
			continue
		}
		su.run(t, k.name+"/Delete", func(t *testing.T, ctx context.Context, s storage.Store) {
			c := mustCreateClient(t, ctx, s, "client")
			for _, key := range []string{"sig-1", "sig-2"} {
				// Same request ID on purpose: deletion is by key, not request.
				if err := k.create(ctx, s, key, newRequest(c, "req-1")); err != nil {
					t.Fatalf("create %s: %v", key, err)
				}
			}
			if err := k.del(ctx, s, "sig-1"); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if _, err := k.get(ctx, s, "sig-1", nil); !errors.Is(err, fosite.ErrNotFound) {
				t.Errorf("get after delete: %v, want fosite.ErrNotFound", err)
			}
			if _, err := k.get(ctx, s, "sig-2", nil); err != nil {
				t.Errorf("get of the other key: %v, want nil", err)
			}
			if err := k.del(ctx, s, "sig-1"); err != nil {
				t.Errorf("second delete: %v, want nil", err)
			}
		})
	}

	// The five stores share request IDs and may share keys (fosite derives
	// every signature the same way), so one kind must not read another's rows.
	su.run(t, "KindsAreSeparate", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		for i, k := range sessionKinds {
			if i == 0 {
				if err := k.create(ctx, s, "shared", newRequest(c, "req-1")); err != nil {
					t.Fatalf("%s create: %v", k.name, err)
				}
				continue
			}
			if _, err := k.get(ctx, s, "shared", nil); !errors.Is(err, fosite.ErrNotFound) {
				t.Errorf("%s get of a key only %s holds: %v, want fosite.ErrNotFound", k.name, sessionKinds[0].name, err)
			}
		}
	})

	// Deleting a client must take its grants with it: otherwise tokens issued
	// to it stay usable, and come back if the ID is registered again.
	su.run(t, "DeletedClientTokensUnreadable", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "doomed")
		keep := mustCreateClient(t, ctx, s, "keep")
		for _, k := range sessionKinds {
			if err := k.create(ctx, s, "sig-doomed", newRequest(c, "req-doomed")); err != nil {
				t.Fatalf("%s create: %v", k.name, err)
			}
			if err := k.create(ctx, s, "sig-keep", newRequest(keep, "req-keep")); err != nil {
				t.Fatalf("%s create: %v", k.name, err)
			}
		}
		if err := s.DeleteClient(ctx, "doomed"); err != nil {
			t.Fatalf("DeleteClient: %v", err)
		}
		check := func(when string) {
			t.Helper()
			for _, k := range sessionKinds {
				if _, err := k.get(ctx, s, "sig-doomed", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
					t.Errorf("%s: %s get of a deleted client's token: %v, want fosite.ErrNotFound", when, k.name, err)
				}
				if _, err := k.get(ctx, s, "sig-keep", openid.NewDefaultSession()); err != nil {
					t.Errorf("%s: %s get of another client's token: %v", when, k.name, err)
				}
			}
		}
		check("after delete")
		mustCreateClient(t, ctx, s, "doomed")
		check("after re-registering the ID")
	})
}
