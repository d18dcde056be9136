package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	refreshgrant "github.com/wxidp/wxidp/provider/refresh"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// refreshProvider is fosite's own refresh-token grant on a Store, so the
// storage rules are checked against the code that relies on them rather than
// against our reading of fosite's comments. fast composes it as the
// provider does, writing through Store.RotateAndIssue (provider/refresh);
// otherwise it is fosite's handler with its transaction.
func refreshProvider(s *postgres.Store, fast bool) (fosite.OAuth2Provider, *oauth2.HMACSHAStrategy) {
	config := &fosite.Config{
		GlobalSecret:         []byte("0123456789abcdef0123456789abcdef"),
		AccessTokenLifespan:  time.Hour,
		RefreshTokenLifespan: 24 * time.Hour,
		// fosite fills these in lazily on first use, racing with itself under
		// concurrent requests unless set here.
		ScopeStrategy:            fosite.WildcardScopeStrategy,
		AudienceMatchingStrategy: fosite.DefaultAudienceMatchingStrategy,
	}
	config.ClientSecretsHasher = &fosite.BCrypt{Config: config}
	strategy := compose.NewOAuth2HMACStrategy(config)
	factory := compose.OAuth2RefreshTokenGrantFactory
	if fast {
		factory = refreshgrant.Factory(s)
	}
	p := compose.Compose(config, s, &compose.CommonStrategy{CoreStrategy: strategy}, factory)
	return p, strategy
}

// issueRefreshToken stores an access and refresh token pair for a new public
// client, as a grant handler would, and returns the refresh token.
// bothHandlers runs test, in parallel, with fosite's refresh handler and
// with the provider's (refreshProvider's fast).
func bothHandlers(t *testing.T, test func(t *testing.T, fast bool)) {
	for _, fast := range []bool{false, true} {
		t.Run(map[bool]string{false: "fosite", true: "fast"}[fast], func(t *testing.T) {
			t.Parallel()
			test(t, fast)
		})
	}
}

func issueRefreshToken(t *testing.T, ctx context.Context, s *postgres.Store, strategy *oauth2.HMACSHAStrategy) string {
	t.Helper()
	c := &storage.Client{
		ID: "mp", GrantTypes: []string{"refresh_token"}, Scopes: []string{"openid", "offline"},
		TokenEndpointAuthMethod: "none",
	}
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	return issueChain(t, ctx, s, strategy, c, "req-1")
}

// issueChain stores the first access and refresh tokens of grant id of
// client c, and returns the refresh token.
func issueChain(t *testing.T, ctx context.Context, s *postgres.Store, strategy *oauth2.HMACSHAStrategy, c *storage.Client, id string) string {
	t.Helper()
	sess := openid.NewDefaultSession()
	sess.Subject = "user-1"
	sess.SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour).Round(time.Second))
	sess.SetExpiresAt(fosite.RefreshToken, time.Now().Add(24*time.Hour).Round(time.Second))
	req := fosite.NewRequest()
	req.ID = id
	req.Client = storage.NewOAuthClient(c)
	req.Session = sess
	req.SetRequestedScopes(fosite.Arguments{"openid", "offline"})
	req.GrantScope("openid")
	req.GrantScope("offline")

	_, atSig, err := strategy.GenerateAccessToken(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	rt, rtSig, err := strategy.GenerateRefreshToken(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessTokenSession(ctx, atSig, req); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRefreshTokenSession(ctx, rtSig, atSig, req); err != nil {
		t.Fatal(err)
	}
	return rt
}

func refresh(ctx context.Context, p fosite.OAuth2Provider, rt string) (string, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"mp"}}
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ar, err := p.NewAccessRequest(ctx, r, openid.NewDefaultSession())
	if err != nil {
		return "", err
	}
	resp, err := p.NewAccessResponse(ctx, ar)
	if err != nil {
		return "", err
	}
	next, _ := resp.GetExtra("refresh_token").(string)
	return next, nil
}

// TestFositeRefreshRotation: a refresh rotates, the new token refreshes again,
// and presenting a used token is detected as reuse and revokes the chain.
func TestFositeRefreshRotation(t *testing.T) {
	t.Parallel()
	bothHandlers(t, func(t *testing.T, fast bool) {
		ctx := t.Context()
		s, _, _ := postgrestest.NewStore(t)
		p, strategy := refreshProvider(s, fast)
		rt1 := issueRefreshToken(t, ctx, s, strategy)

		rt2, err := refresh(ctx, p, rt1)
		if err != nil || rt2 == "" {
			t.Fatalf("first refresh: %q, %v", rt2, err)
		}
		rt3, err := refresh(ctx, p, rt2)
		if err != nil || rt3 == "" {
			t.Fatalf("refresh with the rotated token: %q, %v", rt3, err)
		}
		if _, err := refresh(ctx, p, rt1); !errors.Is(err, fosite.ErrInvalidGrant) {
			t.Fatalf("reuse of a rotated token: %v, want invalid_grant", err)
		}
		// Reuse revoked every refresh token of the request, the newest included.
		if _, err := refresh(ctx, p, rt3); err == nil {
			t.Fatal("refresh after reuse was detected succeeded, want the chain revoked")
		}
	})
}

// TestFositeConcurrentRefresh: many refreshes of one token at once issue
// exactly one new token pair (fosite's MemoryStore issues several).
func TestFositeConcurrentRefresh(t *testing.T) {
	t.Parallel()
	bothHandlers(t, func(t *testing.T, fast bool) {
		ctx := t.Context()
		s, _, _ := postgrestest.NewStore(t)
		p, strategy := refreshProvider(s, fast)
		rt := issueRefreshToken(t, ctx, s, strategy)

		const n = 20
		errs := make(chan error, n)
		start := make(chan struct{})
		for range n {
			go func() {
				<-start
				_, err := refresh(ctx, p, rt)
				errs <- err
			}()
		}
		close(start)
		wins := 0
		for range n {
			err := <-errs
			switch {
			case err == nil:
				wins++
			// Losers either lose the rotation (retry) or arrive after it
			// (reuse); neither may be a server error.
			case errors.Is(err, fosite.ErrInvalidRequest), errors.Is(err, fosite.ErrInvalidGrant):
			default:
				t.Errorf("refresh: %v (%s), want success, invalid_request or invalid_grant", err, fosite.ErrorToRFC6749Error(err).GetDescription())
			}
		}
		if wins != 1 {
			t.Errorf("%d of %d concurrent refreshes of one token succeeded, want exactly 1", wins, n)
		}
	})
}

// TestFositeRefreshGrace: with a grace period, a client that lost the
// response to a refresh retries with the same token and gets new tokens
// instead of a revoked chain; a third use of that token is still reuse.
func TestFositeRefreshGrace(t *testing.T) {
	t.Parallel()
	bothHandlers(t, func(t *testing.T, fast bool) {
		ctx := t.Context()
		s, _, _ := postgrestest.NewStore(t, postgres.WithRefreshGrace(time.Minute))
		p, strategy := refreshProvider(s, fast)
		rt1 := issueRefreshToken(t, ctx, s, strategy)

		lost, err := refresh(ctx, p, rt1)
		if err != nil || lost == "" {
			t.Fatalf("first refresh: %q, %v", lost, err)
		}
		rt2, err := refresh(ctx, p, rt1)
		if err != nil || rt2 == "" || rt2 == lost {
			t.Fatalf("retry within the grace period: %q, %v; want a new token", rt2, err)
		}
		rt3, err := refresh(ctx, p, rt2)
		if err != nil || rt3 == "" {
			t.Fatalf("refresh with the retry's token: %q, %v", rt3, err)
		}
		if _, err := refresh(ctx, p, rt1); !errors.Is(err, fosite.ErrInvalidGrant) {
			t.Fatalf("third use of a token: %v, want invalid_grant", err)
		}
		for name, rt := range map[string]string{"newest": rt3, "lost": lost} {
			if _, err := refresh(ctx, p, rt); err == nil {
				t.Errorf("refresh with the %s token after reuse was detected succeeded, want the chain revoked", name)
			}
		}
	})
}

// TestFositeRefreshBatched: concurrent refreshes of many grants through
// the handler the provider composes share round trips (and commits): the
// rotation and the tokens of each are one statement, batched. fosite's own
// handler takes two round trips of its own per refresh.
func TestFositeRefreshBatched(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, rt := tracedStoreWith(t) // with its client cache, as served
	p, strategy := refreshProvider(s, true)
	const n = 64
	tokens := make([]string, n)
	tokens[0] = issueRefreshToken(t, ctx, s, strategy)
	c, err := s.LookupClient(ctx, "mp")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		tokens[i] = issueChain(t, ctx, s, strategy, c, fmt.Sprintf("req-%d", i+1))
	}
	warm(t, s, "mp") // cached before the count starts
	next := make([]string, n)
	checkBatched(t, rt, n, func(i int) (err error) {
		next[i], err = refresh(ctx, p, tokens[i])
		return err
	})
	for i, tok := range next {
		if _, err := refresh(ctx, p, tok); err != nil {
			t.Errorf("refresh %d: the new token does not refresh: %v", i, err)
		}
	}
}

// TestFositeRefreshFallsBack: a rotation the one-statement write could not
// make (here its row lock outlasted the batch's lock bound, half the store
// deadline) is "not written", and the provider's handler then refreshes
// through fosite's transactional path, which waits for the lock: the client
// gets its new tokens, and the chain rotated exactly once.
func TestFositeRefreshFallsBack(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool, _ := postgrestest.NewStore(t, postgres.WithTimeout(2*time.Second))
	p, strategy := refreshProvider(s, true)
	rt1 := issueRefreshToken(t, ctx, s, strategy)

	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx) //nolint:errcheck // committed below; a failed test leaves it to this
	if _, err := lock.Exec(ctx, `SELECT 1 FROM oauth2_refresh_tokens WHERE signature = $1 FOR UPDATE`,
		strategy.RefreshTokenSignature(ctx, rt1)); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		rt  string
		err error
	}
	done := make(chan answer, 1)
	go func() {
		rt, err := refresh(ctx, p, rt1)
		done <- answer{rt, err}
	}()
	awaitTransactionalPath(t, pool, "oauth2_refresh_tokens", done)
	if err := lock.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil || a.rt == "" {
		t.Fatalf("refresh after the fallback: %q, %v", a.rt, a.err)
	}
	if _, err := refresh(ctx, p, a.rt); err != nil {
		t.Fatalf("the new refresh token: %v", err)
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM oauth2_refresh_tokens`).Scan(&rows); err != nil || rows != 3 {
		t.Fatalf("refresh tokens stored: %d, %v; want 3 (one per rotation)", rows, err)
	}
}

// awaitTransactionalPath waits until a statement that updates table
// without the token inserts (fosite's path, inside its transaction) waits
// for a row lock: the one-statement write gave up on that lock and the
// handler fell back. It fails the test if an answer arrives on done first.
func awaitTransactionalPath[T any](t *testing.T, pool *pgxpool.Pool, table string, done <-chan T) {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; {
		var fallback bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'
				AND query LIKE '%UPDATE '||$1||'%' AND query NOT LIKE '%INSERT INTO oauth2_access_tokens%')`, table).Scan(&fallback); err != nil {
			t.Fatal(err)
		}
		if fallback {
			return
		}
		select {
		case a := <-done:
			t.Fatalf("answered %+v before taking the transactional path", a)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing took the transactional path")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
