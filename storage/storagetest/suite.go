package storagetest

import (
	"context"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
)

// Run runs the whole conformance suite against the stores newStore returns,
// or only the groups named in only (Users, UserRaces, Concurrency, ...).
// newStore is called once per subtest, after t.Parallel, and must return an
// empty store that no other subtest sees; it may register cleanups on t.
//
// S must be the backend's concrete type, not an interface: the groups of an
// optional capability (storage.Resealer: Reseal, SealedHeaders, and
// ResealAll among the Transactions) run exactly when S implements it.
func Run[S storage.Store](t *testing.T, newStore func(t *testing.T) S, only ...string) {
	t.Helper()
	var zero S
	if any(zero) == nil {
		t.Fatal("storagetest.Run: newStore must return the store's concrete type, so the suite sees its optional capabilities")
	}
	_, resealer := any(zero).(storage.Resealer)
	su := suite{newStore: func(t *testing.T) storage.Store { return newStore(t) }, resealer: resealer}
	groups := []struct {
		name string
		run  func(t *testing.T, su suite)
		// resealer marks the groups of the storage.Resealer capability.
		resealer bool
	}{
		{"Clients", testClients, false},
		{"SigningKeys", testSigningKeys, false},
		{"KeyRotation", testKeyRotation, false},
		{"Reseal", testReseal, true},
		{"SealedHeaders", testSealedHeaders, true},
		{"Sessions", testSessions, false},
		{"AuthorizeCode", testAuthorizeCode, false},
		{"RefreshToken", testRefreshToken, false},
		{"Revocation", testRevocation, false},
		{"Transactions", testTransactions, false},
		{"ClientAssertionJTI", testJTIs, false},
		{"Concurrency", testConcurrency, false},
		{"Users", testUsers, false},
		{"UserRaces", testUserRaces, false},
		{"People", testPeople, false},
		{"PeopleDisable", testPeopleDisable, false},
		{"PeopleRaces", testPeopleRaces, false},
		{"WeChatCodes", testWeChatCodes, false},
		{"WeChatTokens", testWeChatTokens, false},
		{"Purge", testPurge, false},
		{"Leases", testLeases, false},
		{"Audit", testAudit, false},
		{"Login", testLogin, false},
		{"LoginRetire", testLoginRetire, false},
		{"Ping", testPing, false},
	}
	for _, g := range groups {
		named := slices.Contains(only, g.name)
		if len(only) > 0 && !named {
			continue
		}
		if g.resealer && !resealer {
			if named {
				t.Errorf("group %s asked for, but %T does not implement storage.Resealer", g.name, zero)
			}
			continue
		}
		t.Run(g.name, func(t *testing.T) { g.run(t, su) })
	}
}

type suite struct {
	newStore func(t *testing.T) storage.Store
	// resealer reports whether the stores implement storage.Resealer.
	resealer bool
}

// resealStore is a store with the storage.Resealer capability.
type resealStore interface {
	storage.Store
	storage.Resealer
}

// runReseal is run for the groups of the storage.Resealer capability, which
// Run starts only for stores that have it.
func (su suite) runReseal(t *testing.T, name string, fn func(t *testing.T, ctx context.Context, s resealStore)) {
	t.Helper()
	su.run(t, name, func(t *testing.T, ctx context.Context, s storage.Store) {
		fn(t, ctx, s.(resealStore))
	})
}

// run starts a parallel subtest with its own store, so no case can depend on
// state another case left behind.
func (su suite) run(t *testing.T, name string, fn func(t *testing.T, ctx context.Context, s storage.Store)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		s := su.newStore(t)
		fn(t, t.Context(), s)
	})
}

// timeSlack absorbs clock differences between the test process and a
// database server that stamps rows with its own now().
const timeSlack = time.Minute

// checkRecent fails unless got was stamped between before and after.
func checkRecent(t *testing.T, field string, got, before, after time.Time) {
	t.Helper()
	if got.IsZero() {
		t.Errorf("%s is zero, want set by the store", field)
		return
	}
	if got.Before(before.Add(-timeSlack)) || got.After(after.Add(timeSlack)) {
		t.Errorf("%s = %v, want between %v and %v", field, got, before, after)
	}
}

// sameStrings treats nil and empty as equal: a database hands back whichever
// its driver prefers, and callers only range over the result.
func sameStrings(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return slices.Equal(a, b)
}

// usec drops what a timestamptz column cannot hold, so values the test
// chooses compare equal after a database round trip.
func usec(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func newClient(id string) *storage.Client {
	return &storage.Client{
		ID:                      id,
		SecretHash:              []byte("hash-of-" + id),
		Name:                    "Client " + id,
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		Scopes:                  []string{"openid", "offline", "profile"},
		Audience:                []string{"https://api.example.com"},
		RedirectURIs:            []string{"https://app.example.com/cb", "https://app.example.com/cb2"},
		PostLogoutRedirectURIs:  []string{"https://app.example.com/bye", "https://app.example.com/"},
		TokenEndpointAuthMethod: "client_secret_basic",
		WeChatAppID:             "wx" + id,
		WeChatLoginPage:         "pages/scan/index",
		WeChatAppSecret:         []byte{0, 1, 2, 0xfe, 0xff},
	}
}

func mustCreateClient(t *testing.T, ctx context.Context, s storage.Store, id string) *storage.Client {
	t.Helper()
	c := newClient(id)
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatalf("CreateClient(%q): %v", id, err)
	}
	return c
}

// Expiries are whole seconds in UTC, as fosite sets them, and differ per
// token type so a backend that keeps only one of them is caught.
var (
	atExpiry   = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	rtExpiry   = atExpiry.Add(30 * 24 * time.Hour)
	codeExpiry = atExpiry.Add(-50 * time.Minute)
	idExpiry   = atExpiry.Add(10 * time.Minute)
)

func newSession(subject string) *openid.DefaultSession {
	sess := openid.NewDefaultSession()
	sess.Subject = subject
	sess.Username = "user-" + subject
	sess.Claims.Subject = subject
	sess.Claims.Issuer = "https://idp.example.com"
	sess.Claims.Extra = map[string]any{"unionid": "u-" + subject}
	sess.SetExpiresAt(fosite.AccessToken, atExpiry)
	sess.SetExpiresAt(fosite.RefreshToken, rtExpiry)
	sess.SetExpiresAt(fosite.AuthorizeCode, codeExpiry)
	sess.SetExpiresAt(fosite.IDToken, idExpiry)
	return sess
}

// newRequest builds a request with every field a backend must keep set to a
// distinguishable value.
func newRequest(c *storage.Client, id string) *fosite.Request {
	return &fosite.Request{
		ID:                id,
		RequestedAt:       time.Now().UTC().Add(-time.Minute),
		Client:            storage.NewOAuthClient(c),
		RequestedScope:    fosite.Arguments{"openid", "offline", "profile"},
		GrantedScope:      fosite.Arguments{"openid", "offline"},
		RequestedAudience: fosite.Arguments{"https://api.example.com", "https://other.example.com"},
		GrantedAudience:   fosite.Arguments{"https://api.example.com"},
		Form: url.Values{
			"grant_type": {"authorization_code"},
			"multi":      {"a", "b"},
		},
		Session: newSession("sub-" + id),
	}
}

// checkRequest compares what a store returned with the request stored.
func checkRequest(t *testing.T, got fosite.Requester, want *fosite.Request) {
	t.Helper()
	if got == nil {
		t.Fatal("request is nil")
	}
	if got.GetID() != want.ID {
		t.Errorf("ID = %q, want %q", got.GetID(), want.ID)
	}
	gotAt := got.GetRequestedAt().UTC().Truncate(time.Second)
	if wantAt := want.RequestedAt.UTC().Truncate(time.Second); !gotAt.Equal(wantAt) {
		t.Errorf("RequestedAt = %v, want %v", gotAt, wantAt)
	}
	if got.GetClient() == nil {
		t.Fatal("client is nil")
	}
	if got.GetClient().GetID() != want.Client.GetID() {
		t.Errorf("client ID = %q, want %q", got.GetClient().GetID(), want.Client.GetID())
	}
	if _, ok := got.GetClient().(*storage.OAuthClient); !ok {
		t.Errorf("client is %T, want *storage.OAuthClient", got.GetClient())
	}
	for _, f := range []struct {
		name      string
		got, want []string
	}{
		{"requested scopes", got.GetRequestedScopes(), want.RequestedScope},
		{"granted scopes", got.GetGrantedScopes(), want.GrantedScope},
		{"requested audience", got.GetRequestedAudience(), want.RequestedAudience},
		{"granted audience", got.GetGrantedAudience(), want.GrantedAudience},
	} {
		if !sameStrings(f.got, f.want) {
			t.Errorf("%s = %q, want %q", f.name, f.got, f.want)
		}
	}
	if g, w := got.GetRequestForm().Encode(), want.Form.Encode(); g != w {
		t.Errorf("form = %q, want %q", g, w)
	}
}

// checkSession compares a decoded session with the one stored.
func checkSession(t *testing.T, got fosite.Session, want *openid.DefaultSession) {
	t.Helper()
	sess, ok := got.(*openid.DefaultSession)
	if !ok {
		t.Fatalf("session is %T, want *openid.DefaultSession", got)
	}
	if sess.Subject != want.Subject || sess.Username != want.Username {
		t.Errorf("session subject, username = %q, %q; want %q, %q", sess.Subject, sess.Username, want.Subject, want.Username)
	}
	if sess.Claims == nil {
		t.Fatal("session claims are nil")
	}
	if sess.Claims.Subject != want.Claims.Subject || sess.Claims.Issuer != want.Claims.Issuer {
		t.Errorf("claims sub, iss = %q, %q; want %q, %q", sess.Claims.Subject, sess.Claims.Issuer, want.Claims.Subject, want.Claims.Issuer)
	}
	if g, w := sess.Claims.Extra["unionid"], want.Claims.Extra["unionid"]; g != w {
		t.Errorf("claims extra unionid = %v, want %v", g, w)
	}
	for _, tt := range []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken, fosite.AuthorizeCode, fosite.IDToken} {
		if g, w := sess.GetExpiresAt(tt), want.GetExpiresAt(tt); !g.Equal(w) {
			t.Errorf("ExpiresAt(%s) = %v, want %v", tt, g, w)
		}
	}
}

// parallel runs fn n times at once and returns each call's error, indexed by
// call. Goroutines must not call t.Fatal, so errors are collected instead.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	// Releasing every goroutine together makes the calls overlap instead of
	// running one after another as they are spawned.
	close(start)
	wg.Wait()
	return errs
}

func testPing(t *testing.T, su suite) {
	su.run(t, "ReturnsNil", func(t *testing.T, ctx context.Context, s storage.Store) {
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
}
