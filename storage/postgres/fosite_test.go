package postgres_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// refreshProvider is fosite's own refresh-token grant on a Store, so the
// storage rules are checked against the code that relies on them rather than
// against our reading of fosite's comments.
func refreshProvider(s *postgres.Store) (fosite.OAuth2Provider, *oauth2.HMACSHAStrategy) {
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
	p := compose.Compose(config, s, &compose.CommonStrategy{CoreStrategy: strategy},
		compose.OAuth2RefreshTokenGrantFactory)
	return p, strategy
}

// issueRefreshToken stores an access and refresh token pair for a new public
// client, as a grant handler would, and returns the refresh token.
func issueRefreshToken(t *testing.T, ctx context.Context, s *postgres.Store, strategy *oauth2.HMACSHAStrategy) string {
	t.Helper()
	c := &storage.Client{
		ID: "mp", GrantTypes: []string{"refresh_token"}, Scopes: []string{"openid", "offline"},
		TokenEndpointAuthMethod: "none",
	}
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	sess := openid.NewDefaultSession()
	sess.Subject = "user-1"
	sess.SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour).Round(time.Second))
	sess.SetExpiresAt(fosite.RefreshToken, time.Now().Add(24*time.Hour).Round(time.Second))
	req := fosite.NewRequest()
	req.ID = "req-1"
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
	ctx := t.Context()
	s, _, _ := postgrestest.NewStore(t)
	p, strategy := refreshProvider(s)
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
}

// TestFositeConcurrentRefresh: many refreshes of one token at once issue
// exactly one new token pair (fosite's MemoryStore issues several).
func TestFositeConcurrentRefresh(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _, _ := postgrestest.NewStore(t)
	p, strategy := refreshProvider(s)
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
}

// TestFositeRefreshGrace: with a grace period, a client that lost the
// response to a refresh retries with the same token and gets new tokens
// instead of a revoked chain; a third use of that token is still reuse.
func TestFositeRefreshGrace(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _, _ := postgrestest.NewStore(t, postgres.WithRefreshGrace(time.Minute))
	p, strategy := refreshProvider(s)
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
}
