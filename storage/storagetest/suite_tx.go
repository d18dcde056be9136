package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
)

// txCase is one kind of write made inside a transaction. before and after
// describe the state without and with the write, so the same case proves
// both that Rollback undoes it and that Commit keeps it.
type txCase struct {
	name   string
	setup  func(t *testing.T, ctx context.Context, s storage.Store)
	write  func(ctx context.Context, s storage.Store) error
	before func(t *testing.T, ctx context.Context, s storage.Store)
	after  func(t *testing.T, ctx context.Context, s storage.Store)
}

func txCases() []txCase {
	withClient := func(t *testing.T, ctx context.Context, s storage.Store) { mustCreateClient(t, ctx, s, "a") }
	withTokens := func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "a")
		mustCreateTokens(t, ctx, s, newRequest(c, "req-1"), "1", "2")
	}
	withAllKinds := func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "a")
		for _, k := range sessionKinds {
			if err := k.create(ctx, s, "sig", newRequest(c, "req-1")); err != nil {
				t.Fatalf("%s create: %v", k.name, err)
			}
		}
	}
	allKinds := func(want error) func(t *testing.T, ctx context.Context, s storage.Store) {
		return func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			for _, k := range sessionKinds {
				if _, err := k.get(ctx, s, "sig", openid.NewDefaultSession()); !errors.Is(err, want) {
					t.Errorf("%s get: %v, want %v", k.name, err, want)
				}
			}
		}
	}
	clientName := func(want string) func(t *testing.T, ctx context.Context, s storage.Store) {
		return func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			c, err := s.LookupClient(ctx, "a")
			switch {
			case want == "" && !errors.Is(err, storage.ErrNotFound):
				t.Errorf("LookupClient: %v, want ErrNotFound", err)
			case want != "" && err != nil:
				t.Errorf("LookupClient: %v", err)
			case want != "" && c.Name != want:
				t.Errorf("client name = %q, want %q", c.Name, want)
			}
		}
	}
	tokens := func(want map[string]error) func(t *testing.T, ctx context.Context, s storage.Store) {
		return func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			checkTokens(t, ctx, s, want)
		}
	}
	jti := func(want error) func(t *testing.T, ctx context.Context, s storage.Store) {
		return func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			if err := s.ClientAssertionJWTValid(ctx, "jti-1"); !errors.Is(err, want) {
				t.Errorf("ClientAssertionJWTValid: %v, want %v", err, want)
			}
		}
	}
	activeKeys := func(want int) func(t *testing.T, ctx context.Context, s storage.Store) {
		return func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			keys, err := s.ListSigningKeys(ctx)
			if err != nil || len(keys) != want {
				t.Errorf("ListSigningKeys = %d keys, %v; want %d", len(keys), err, want)
			}
		}
	}
	none := func(*testing.T, context.Context, storage.Store) {}
	unrevoked := map[string]error{"rt-1": nil, "rt-2": nil, "at-1": nil, "at-2": nil}

	cases := []txCase{
		{
			name:   "CreateClient",
			setup:  none,
			write:  func(ctx context.Context, s storage.Store) error { return s.CreateClient(ctx, newClient("a")) },
			before: clientName(""),
			after:  clientName(newClient("a").Name),
		},
		{
			name:  "UpdateClient",
			setup: withClient,
			write: func(ctx context.Context, s storage.Store) error {
				c := newClient("a")
				c.Name = "Renamed"
				return s.UpdateClient(ctx, c, time.Time{})
			},
			before: clientName(newClient("a").Name),
			after:  clientName("Renamed"),
		},
		{
			name:  "DeleteClientWithTokens",
			setup: withAllKinds,
			write: func(ctx context.Context, s storage.Store) error { return s.DeleteClient(ctx, "a") },
			before: func(t *testing.T, ctx context.Context, s storage.Store) {
				clientName(newClient("a").Name)(t, ctx, s)
				allKinds(nil)(t, ctx, s)
			},
			after: func(t *testing.T, ctx context.Context, s storage.Store) {
				clientName("")(t, ctx, s)
				allKinds(fosite.ErrNotFound)(t, ctx, s)
			},
		},
		{
			name:  "CreateSigningKey",
			setup: none,
			write: func(ctx context.Context, s storage.Store) error {
				return s.CreateSigningKey(ctx, newKey("k", storage.KeyActive, time.Now()))
			},
			before: activeKeys(0),
			after:  activeKeys(1),
		},
		{
			name:  "CreateSessions",
			setup: withClient,
			write: func(ctx context.Context, s storage.Store) error {
				c, err := s.LookupClient(ctx, "a")
				if err != nil {
					return err
				}
				for _, k := range sessionKinds {
					if err := k.create(ctx, s, "sig", newRequest(c, "req-1")); err != nil {
						return err
					}
				}
				return nil
			},
			before: allKinds(fosite.ErrNotFound),
			after:  allKinds(nil),
		},
		{
			name:  "DeleteSessions",
			setup: withAllKinds,
			write: func(ctx context.Context, s storage.Store) error {
				for _, k := range sessionKinds {
					if k.del == nil {
						continue
					}
					if err := k.del(ctx, s, "sig"); err != nil {
						return err
					}
				}
				return s.InvalidateAuthorizeCodeSession(ctx, "sig")
			},
			before: allKinds(nil),
			after: func(t *testing.T, ctx context.Context, s storage.Store) {
				for _, k := range sessionKinds {
					var want error = fosite.ErrNotFound
					if k.del == nil {
						want = fosite.ErrInvalidatedAuthorizeCode
					}
					if _, err := k.get(ctx, s, "sig", nil); !errors.Is(err, want) {
						t.Errorf("%s get: %v, want %v", k.name, err, want)
					}
				}
			},
		},
		{
			name:   "RotateRefreshToken",
			setup:  withTokens,
			write:  func(ctx context.Context, s storage.Store) error { return s.RotateRefreshToken(ctx, "req-1", "rt-1") },
			before: tokens(unrevoked),
			after: tokens(map[string]error{
				"rt-1": fosite.ErrInactiveToken, "at-1": fosite.ErrNotFound, "rt-2": nil, "at-2": nil,
			}),
		},
		{
			// Rotating a token the same transaction created writes its key
			// twice; undoing in the wrong order would leave it behind.
			name:  "CreateThenRotate",
			setup: withClient,
			write: func(ctx context.Context, s storage.Store) error {
				c, err := s.LookupClient(ctx, "a")
				if err != nil {
					return err
				}
				r := newRequest(c, "req-1")
				if err := s.CreateAccessTokenSession(ctx, "at-1", r); err != nil {
					return err
				}
				if err := s.CreateRefreshTokenSession(ctx, "rt-1", "at-1", r); err != nil {
					return err
				}
				return s.RotateRefreshToken(ctx, "req-1", "rt-1")
			},
			before: tokens(map[string]error{"rt-1": fosite.ErrNotFound, "at-1": fosite.ErrNotFound}),
			after:  tokens(map[string]error{"rt-1": fosite.ErrInactiveToken, "at-1": fosite.ErrNotFound}),
		},
		{
			name:  "Revoke",
			setup: withTokens,
			write: func(ctx context.Context, s storage.Store) error {
				if err := s.RevokeRefreshToken(ctx, "req-1"); err != nil {
					return err
				}
				return s.RevokeAccessToken(ctx, "req-1")
			},
			before: tokens(unrevoked),
			after: tokens(map[string]error{
				"rt-1": fosite.ErrInactiveToken, "rt-2": fosite.ErrInactiveToken,
				"at-1": fosite.ErrNotFound, "at-2": fosite.ErrNotFound,
			}),
		},
		{
			name:  "SetClientAssertionJWT",
			setup: none,
			write: func(ctx context.Context, s storage.Store) error {
				return s.SetClientAssertionJWT(ctx, "jti-1", time.Now().Add(time.Hour))
			},
			before: jti(nil),
			after:  jti(fosite.ErrJTIKnown),
		},
	}
	return append(append(cases, wechatTxCases()...), keyTxCases()...)
}

func testTransactions(t *testing.T, su suite) {
	for _, tc := range append(txCases(), su.resealTxCases()...) {
		su.run(t, tc.name+"/Rollback", func(t *testing.T, ctx context.Context, s storage.Store) {
			tc.setup(t, ctx, s)
			txCtx := mustBegin(t, ctx, s)
			if err := tc.write(txCtx, s); err != nil {
				_ = s.Rollback(txCtx)
				t.Fatalf("write in tx: %v", err)
			}
			// A transaction reads its own writes: fosite creates tokens
			// and reads them back within one.
			tc.after(t, txCtx, s)
			if err := s.Rollback(txCtx); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			tc.before(t, ctx, s)
		})
		su.run(t, tc.name+"/Commit", func(t *testing.T, ctx context.Context, s storage.Store) {
			tc.setup(t, ctx, s)
			txCtx := mustBegin(t, ctx, s)
			if err := tc.write(txCtx, s); err != nil {
				_ = s.Rollback(txCtx)
				t.Fatalf("write in tx: %v", err)
			}
			if err := s.Commit(txCtx); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			tc.after(t, ctx, s)
		})
	}

	su.run(t, "NestedBegin", func(t *testing.T, ctx context.Context, s storage.Store) {
		txCtx := mustBegin(t, ctx, s)
		if _, err := s.BeginTX(txCtx); !errors.Is(err, storage.ErrTxActive) {
			t.Errorf("BeginTX in a transaction: %v, want ErrTxActive", err)
		}
		// The outer transaction must survive the refused nested one.
		if err := s.CreateClient(txCtx, newClient("a")); err != nil {
			t.Fatalf("CreateClient in the outer tx: %v", err)
		}
		if err := s.Commit(txCtx); err != nil {
			t.Fatalf("Commit of the outer tx: %v", err)
		}
		if _, err := s.LookupClient(ctx, "a"); err != nil {
			t.Errorf("LookupClient after Commit: %v", err)
		}
	})

	su.run(t, "NoTx", func(t *testing.T, ctx context.Context, s storage.Store) {
		if err := s.Commit(ctx); !errors.Is(err, storage.ErrNoTx) {
			t.Errorf("Commit without a tx: %v, want ErrNoTx", err)
		}
		if err := s.Rollback(ctx); !errors.Is(err, storage.ErrNoTx) {
			t.Errorf("Rollback without a tx: %v, want ErrNoTx", err)
		}
	})

	// fosite rolls back after a failed commit; ending a finished transaction
	// must report an error rather than touch the store.
	su.run(t, "EndTwice", func(t *testing.T, ctx context.Context, s storage.Store) {
		txCtx := mustBegin(t, ctx, s)
		if err := s.CreateClient(txCtx, newClient("a")); err != nil {
			t.Fatalf("CreateClient: %v", err)
		}
		if err := s.Commit(txCtx); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if err := s.Commit(txCtx); err == nil {
			t.Error("second Commit: nil, want an error")
		}
		if err := s.Rollback(txCtx); err == nil {
			t.Error("Rollback after Commit: nil, want an error")
		}
		if _, err := s.LookupClient(ctx, "a"); err != nil {
			t.Errorf("LookupClient after Rollback of a committed tx: %v", err)
		}
	})
}

func mustBegin(t *testing.T, ctx context.Context, s storage.Store) context.Context {
	t.Helper()
	txCtx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatalf("BeginTX: %v", err)
	}
	return txCtx
}
