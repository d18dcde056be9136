package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
)

// TestCodeLookupsBatched: the three reads of an authorization code exchange
// (the code, its PKCE request, its OpenID Connect session), which fosite
// makes outside its transaction, share round trips across concurrent
// exchanges as token lookups do, and each caller still gets its own answer:
// its row, not found for an unknown code, and for a used code its request
// with fosite.ErrInvalidatedAuthorizeCode (which replay detection needs).
func TestCodeLookupsBatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rt := tracedStore(t)
	const n = 32
	seedCodes(t, s, n, true)
	if err := s.InvalidateAuthorizeCodeSession(ctx, "code-3"); err != nil {
		t.Fatal(err)
	}
	for range 3 { // warm the pool's connections and statements
		_, _ = s.GetAuthorizeCodeSession(ctx, "code-0", openid.NewDefaultSession())
		_, _ = s.GetPKCERequestSession(ctx, "code-0", openid.NewDefaultSession())
		_, _ = s.GetOpenIDConnectSession(ctx, "code-0", fosite.NewAuthorizeRequest())
	}

	lookups := []struct {
		name string
		get  func(code string) (fosite.Requester, error)
	}{
		{"code", func(c string) (fosite.Requester, error) {
			return s.GetAuthorizeCodeSession(ctx, c, openid.NewDefaultSession())
		}},
		{"pkce", func(c string) (fosite.Requester, error) {
			return s.GetPKCERequestSession(ctx, c, openid.NewDefaultSession())
		}},
		{"oidc", func(c string) (fosite.Requester, error) {
			r := fosite.NewAuthorizeRequest()
			r.Session = openid.NewDefaultSession()
			return s.GetOpenIDConnectSession(ctx, c, r)
		}},
	}
	for _, l := range lookups {
		checkBatched(t, rt, 3*n, func(i int) error { // a third unknown, a third asked twice
			if i >= 2*n {
				i -= 2 * n
			}
			code := fmt.Sprintf("code-%d", i)
			req, err := l.get(code)
			switch {
			case i >= n:
				if !errors.Is(err, fosite.ErrNotFound) {
					return fmt.Errorf("%s %s (unknown): %v, want not found", l.name, code, err)
				}
			case i == 3 && l.name == "code":
				if !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) || req == nil || req.GetID() != "grant-3" {
					return fmt.Errorf("%s %s (used): %v, %v, want grant-3's request and ErrInvalidatedAuthorizeCode", l.name, code, req, err)
				}
			case err != nil:
				return fmt.Errorf("%s %s: %v", l.name, code, err)
			case req.GetID() != fmt.Sprintf("grant-%d", i) || req.GetSession().GetSubject() != fmt.Sprintf("sub-grant-%d", i):
				return fmt.Errorf("%s %s: got the row of %s (%s)", l.name, code, req.GetID(), req.GetSession().GetSubject())
			}
			return nil
		})
	}
}

// seedCodes stores n codes' PKCE requests and OpenID Connect sessions
// (code-0 …, grants grant-0 …, of client "web"), and the codes themselves
// with withCodes.
func seedCodes(t *testing.T, s *postgres.Store, n int, withCodes bool) {
	t.Helper()
	ctx := context.Background()
	client := &storage.Client{ID: "web"}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		req := grantRequest(client, fmt.Sprintf("grant-%d", i))
		code := fmt.Sprintf("code-%d", i)
		if withCodes {
			if err := s.CreateAuthorizeCodeSession(ctx, code, req); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreatePKCERequestSession(ctx, code, req); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateOpenIDConnectSession(ctx, code, req); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBatchedKeysUnstorable: a key no row can have (a NUL byte, invalid
// UTF-8: whatever a client sends as a code or token) is not found (and
// deleting it is no error), and does not fail the lookups that share its
// batch, which PostgreSQL would refuse whole for that one array element.
func TestBatchedKeysUnstorable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := tracedStore(t)
	const n = 32
	seedCodes(t, s, n, true)
	bad := []string{"x\x00", "\xff", "code-1\x00"}
	checkConcurrent(t, 6*n, func(i int) error {
		code := fmt.Sprintf("code-%d", i%n)
		if i%2 == 1 {
			code = bad[i%len(bad)]
		}
		var err error
		switch i / (2 * n) {
		case 0:
			_, err = s.GetAuthorizeCodeSession(ctx, code, openid.NewDefaultSession())
		case 1:
			_, err = s.GetAccessTokenSession(ctx, code, openid.NewDefaultSession())
		case 2:
			err = s.DeleteOpenIDConnectSession(ctx, code)
		}
		if errors.Is(err, fosite.ErrNotFound) {
			err = nil // unknown access tokens, the bad keys
		}
		if err != nil {
			return fmt.Errorf("call %d (key %q): %v", i, code, err)
		}
		return nil
	})
}

// TestBatchedReadOneKeyFails: a batched read whose statement fails for
// anything but an outage (here a key PostgreSQL refuses, let past the check
// that normally keeps it out) is read again key by key, so only the caller
// of that key gets the error.
func TestBatchedReadOneKeyFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := tracedStore(t)
	const n = 32
	seedCodes(t, s, n, true)
	checkConcurrent(t, 4*n, func(i int) error {
		if i%4 == 3 {
			if err := postgres.LookupAccessTokenBatched(ctx, s, "x\x00"); err == nil || errors.Is(err, fosite.ErrNotFound) {
				return fmt.Errorf("a refused key: %v, want its error", err)
			}
			return nil
		}
		err := postgres.LookupAccessTokenBatched(ctx, s, fmt.Sprintf("at-%d", i))
		if !errors.Is(err, fosite.ErrNotFound) {
			return fmt.Errorf("a key beside a refused one: %v, want not found", err)
		}
		return nil
	})
}
