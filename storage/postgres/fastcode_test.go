package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/provider/authcode"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// exchange runs s.ExchangeAndIssue for code of req's grant, issuing access
// token at and refresh token rt (none if rt is "") as a code exchange does.
func exchange(ctx context.Context, s *postgres.Store, req fosite.Requester, code, at, rt string) (bool, error) {
	return s.ExchangeAndIssue(ctx, code, func(ctx context.Context) error {
		if err := s.CreateAccessTokenSession(ctx, at, req); err != nil {
			return err
		}
		if rt == "" {
			return nil
		}
		return s.CreateRefreshTokenSession(ctx, rt, at, req)
	})
}

// codeState tells what a code is now: "active", "used" or "absent".
func codeState(t *testing.T, s *postgres.Store, code string) string {
	t.Helper()
	_, err := s.GetAuthorizeCodeSession(context.Background(), code, openid.NewDefaultSession())
	switch {
	case err == nil:
		return "active"
	case errors.Is(err, fosite.ErrInvalidatedAuthorizeCode):
		return "used"
	case errors.Is(err, fosite.ErrNotFound):
		return "absent"
	}
	t.Fatalf("code %s: %v", code, err)
	return ""
}

// TestExchangeAndIssue: a code exchange's invalidation and its tokens are
// one statement with the invalidation's rules
// (InvalidateAuthorizeCodeSession's): only an unused code is exchanged, and
// only once however many present it at once; a refused exchange writes
// nothing; a statement that fails is "not written", for fosite's
// transactional path to decide. Exchanges of many codes at once share
// round trips.
func TestExchangeAndIssue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rt := tracedStore(t)
	const n = 64
	seedCodes(t, s, n+3, true)
	client := &storage.Client{ID: "web"}
	req := func(i int) *fosite.Request { return grantRequest(client, fmt.Sprintf("grant-%d", i)) }

	if written, err := exchange(ctx, s, req(0), "code-0", "at-0", "rt-0"); err != nil || !written {
		t.Fatalf("exchanging code-0: written %v, %v", written, err)
	}
	if st := codeState(t, s, "code-0"); st != "used" {
		t.Errorf("code-0 is %s after its exchange, want used", st)
	}
	if st, at := tokenState(t, s, "rt-0", "at-0"); st != "active" || !at {
		t.Errorf("the tokens of code-0: refresh %s, access stored %v; want active, true", st, at)
	}
	if written, err := exchange(ctx, s, req(1), "code-1", "at-1", ""); err != nil || !written {
		t.Fatalf("exchanging code-1 for an access token only: written %v, %v", written, err)
	}
	if _, at := tokenState(t, s, "-", "at-1"); !at || codeState(t, s, "code-1") != "used" {
		t.Errorf("code-1 exchanged for an access token only: access stored %v, code %s", at, codeState(t, s, "code-1"))
	}

	// Refused, nothing written.
	for name, c := range map[string]struct {
		code string
		want error
	}{
		"used code":    {"code-0", fosite.ErrInvalidatedAuthorizeCode},
		"unknown code": {"code-404", fosite.ErrNotFound},
		"NUL byte":     {"code-2\x00", fosite.ErrNotFound},
	} {
		at, rtok := "at-"+name, "rt-"+name
		if written, err := exchange(ctx, s, req(0), c.code, at, rtok); written || !errors.Is(err, c.want) {
			t.Errorf("%s: written %v, %v; want %v", name, written, err, c.want)
		}
		if st, stored := tokenState(t, s, rtok, at); st != "absent" || stored {
			t.Errorf("%s: a refused exchange stored tokens (%s, %v)", name, st, stored)
		}
	}

	// A failing statement (its access token already stored) wrote nothing
	// and is no answer of its own; the code stays unused.
	if written, err := exchange(ctx, s, req(2), "code-2", "at-0", "rt-dup"); written || err != nil {
		t.Errorf("exchange whose statement fails: written %v, %v; want not written, no error", written, err)
	}
	if st := codeState(t, s, "code-2"); st != "active" {
		t.Errorf("code-2 after a failed statement: %s, want still active", st)
	}

	// One code presented many times at once is exchanged once; the losers
	// are told it was used.
	const racers = 20
	var wins sync.Map
	checkConcurrent(t, racers, func(i int) error {
		written, err := exchange(ctx, s, req(2), "code-2", fmt.Sprintf("at-race-%d", i), fmt.Sprintf("rt-race-%d", i))
		switch {
		case written && err == nil:
			wins.Store(i, true)
		case !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode):
			return fmt.Errorf("racer %d: written %v, %v; want a win or fosite.ErrInvalidatedAuthorizeCode", i, written, err)
		}
		return nil
	})
	won := 0
	for i := range racers {
		st, stored := tokenState(t, s, fmt.Sprintf("rt-race-%d", i), fmt.Sprintf("at-race-%d", i))
		_, w := wins.Load(i)
		if w {
			won++
		}
		if (st == "active") != w || stored != w {
			t.Errorf("racer %d (won %v): refresh %s, access stored %v", i, w, st, stored)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d exchanges of one code won, want 1", won, racers)
	}

	// Concurrent exchanges, one of whose statements fails: the others are
	// written (one by one if they were batched with it), that one is not.
	const mixed = 8
	checkConcurrent(t, mixed, func(i int) error {
		c := i + 3
		at := fmt.Sprintf("at-mixed-%d", c)
		if i == 0 {
			at = "at-0" // already stored: the statement fails
		}
		written, err := exchange(ctx, s, req(c), fmt.Sprintf("code-%d", c), at, fmt.Sprintf("rt-mixed-%d", c))
		if err != nil || written != (i != 0) {
			return fmt.Errorf("mixed exchange %d: written %v, %v", c, written, err)
		}
		return nil
	})
	for i := range mixed {
		want := map[bool]string{true: "used", false: "active"}[i != 0]
		if st := codeState(t, s, fmt.Sprintf("code-%d", i+3)); st != want {
			t.Errorf("mixed exchange of code-%d: the code is %s, want %s", i+3, st, want)
		}
	}

	// Many codes at once.
	from := mixed + 3
	checkBatched(t, rt, n-mixed, func(i int) error {
		c := from + i
		written, err := exchange(ctx, s, req(c), fmt.Sprintf("code-%d", c), fmt.Sprintf("at-many-%d", c), fmt.Sprintf("rt-many-%d", c))
		if err != nil || !written {
			return fmt.Errorf("exchange %d: written %v, %v", c, written, err)
		}
		return nil
	})
	for i := range n - mixed {
		c := from + i
		if st, stored := tokenState(t, s, fmt.Sprintf("rt-many-%d", c), fmt.Sprintf("at-many-%d", c)); st != "active" || !stored {
			t.Errorf("exchange %d: new tokens %s, %v", c, st, stored)
		}
	}
}

// TestExchangeAndIssueRaces: exchanges of a user's codes racing the user's
// disabling or erasure leave no token of the user, and a disabled user's
// code is refused and stays as it was.
func TestExchangeAndIssueRaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, _ := postgrestest.NewStore(t)
	client := &storage.Client{ID: "web"}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	newCodes := func(userID, prefix string, n int) []*fosite.Request {
		reqs := make([]*fosite.Request, n)
		for i := range reqs {
			reqs[i] = grantRequest(client, fmt.Sprintf("%s-%d", prefix, i))
			reqs[i].Session.(*openid.DefaultSession).Subject = userID
			if err := s.CreateAuthorizeCodeSession(ctx, "code-"+reqs[i].ID, reqs[i]); err != nil {
				t.Fatal(err)
			}
		}
		return reqs
	}
	for name, op := range disableOrErase(ctx, s) {
		var written atomic.Int64 // exchanges whose tokens the op then had to delete
		for round := range 4 {
			openID := fmt.Sprintf("o-%s-%d", name, round)
			user, err := s.LinkWeChatIdentity(ctx, &storage.WeChatIdentity{AppID: "wxa", OpenID: openID}, "user-"+openID)
			if err != nil {
				t.Fatal(err)
			}
			const exchanges = 16
			reqs := newCodes(user.ID, "grant-"+openID, exchanges)
			checkConcurrent(t, exchanges+1, func(i int) error {
				if i == exchanges {
					return op(user.ID)
				}
				r := reqs[i]
				w, err := exchange(ctx, s, r, "code-"+r.ID, "at-"+r.ID, "rt-"+r.ID)
				if w {
					written.Add(1)
				} else if err == nil {
					return fmt.Errorf("exchange %d: not written, and no refusal", i)
				}
				// An erasure that deleted the code under the exchange's
				// snapshot reads as a used code, as in a transaction.
				if err != nil && !errors.Is(err, fosite.ErrNotFound) && !errors.Is(err, storage.ErrUserDisabled) &&
					!errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
					return fmt.Errorf("exchange %d: %v", i, err)
				}
				return nil
			})
			if left := tokensLeft(t, pool, user.ID); left != 0 {
				t.Errorf("%s, round %d: %d tokens of the user left", name, round, left)
			}
		}
		if written.Load() == 0 { // then no round raced anything
			t.Errorf("%s: no exchange was written before it", name)
		}
		t.Logf("%s: %d of %d exchanges written before it", name, written.Load(), 4*16)
	}

	user, err := s.LinkWeChatIdentity(ctx, &storage.WeChatIdentity{AppID: "wxa", OpenID: "o-disabled"}, "user-disabled")
	if err != nil {
		t.Fatal(err)
	}
	r := newCodes(user.ID, "grant-disabled", 1)[0]
	if _, err := s.SetUserDisabled(ctx, user.ID, true); err != nil {
		t.Fatal(err)
	}
	// Disabling deleted nothing of a code created after it; the exchange
	// must refuse it by itself.
	if err := s.CreateAuthorizeCodeSession(ctx, "code-late", r); err != nil {
		t.Fatal(err)
	}
	if written, err := exchange(ctx, s, r, "code-late", "at-late", "rt-late"); written || !errors.Is(err, storage.ErrUserDisabled) {
		t.Errorf("a disabled user's code: written %v, %v; want storage.ErrUserDisabled", written, err)
	}
	if st := codeState(t, s, "code-late"); st != "active" {
		t.Errorf("a disabled user's code after its refused exchange: %s, want active", st)
	}
	if left := tokensLeft(t, pool, user.ID); left != 0 {
		t.Errorf("a disabled user's refused exchange left %d tokens", left)
	}
}

// codeProvider is fosite's authorization code grant on a Store (fast: the
// provider's handler and its Writer, writing through
// Store.ExchangeAndIssue or, when that wrote nothing, a transaction), with
// client "web" and n codes of user-1; it returns the codes.
func codeProvider(t *testing.T, s *postgres.Store, fast bool, n int) (fosite.OAuth2Provider, []string) {
	t.Helper()
	ctx := context.Background()
	config := &fosite.Config{
		GlobalSecret:             []byte("0123456789abcdef0123456789abcdef"),
		AccessTokenLifespan:      time.Hour,
		RefreshTokenLifespan:     24 * time.Hour,
		AuthorizeCodeLifespan:    10 * time.Minute,
		ScopeStrategy:            fosite.WildcardScopeStrategy,
		AudienceMatchingStrategy: fosite.DefaultAudienceMatchingStrategy,
	}
	strategy := compose.NewOAuth2HMACStrategy(config)
	factories := []compose.Factory{compose.OAuth2AuthorizeExplicitFactory}
	if fast {
		factories = []compose.Factory{authcode.Factory, authcode.WriterFactory(s)}
	}
	p := compose.Compose(config, s, &compose.CommonStrategy{CoreStrategy: strategy},
		append(factories, compose.OAuth2TokenIntrospectionFactory)...)
	client := &storage.Client{
		ID: "web", GrantTypes: []string{"authorization_code", "refresh_token"},
		Scopes: []string{"openid", "offline_access"}, TokenEndpointAuthMethod: "none",
	}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	codes := make([]string, n)
	for i := range codes {
		req := grantRequest(client, fmt.Sprintf("grant-%d", i))
		code, sig, err := strategy.GenerateAuthorizeCode(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAuthorizeCodeSession(ctx, sig, req); err != nil {
			t.Fatal(err)
		}
		codes[i] = code
	}
	return p, codes
}

// exchangeCode exchanges code at p for its access and refresh tokens.
func exchangeCode(ctx context.Context, p fosite.OAuth2Provider, code string) (access, refresh string, _ error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"web"}}
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ar, err := p.NewAccessRequest(ctx, r, openid.NewDefaultSession())
	if err != nil {
		return "", "", err
	}
	// As the provider does: the provider's handler leaves the write to the
	// Writer composed after it (fosite's handler ignores this).
	ctx = authcode.Defer(ctx)
	resp, err := p.NewAccessResponse(ctx, ar)
	if err != nil {
		return "", "", err
	}
	if authcode.Unwritten(ctx) {
		return "", "", errors.New("the exchange was answered but not written")
	}
	refresh, _ = resp.GetExtra("refresh_token").(string)
	return resp.GetAccessToken(), refresh, nil
}

// TestFositeCodeExchange: with fosite's handler and with the provider's, a
// code is exchanged for tokens that introspect as active, and the code
// presented again is a replay: invalid_grant, and the tokens issued with
// it revoked (RFC 6749 §4.1.2).
func TestFositeCodeExchange(t *testing.T) {
	t.Parallel()
	bothHandlers(t, func(t *testing.T, fast bool) {
		ctx := context.Background()
		s, _, _ := postgrestest.NewStore(t)
		p, codes := codeProvider(t, s, fast, 1)
		at, rt, err := exchangeCode(ctx, p, codes[0])
		if err != nil || at == "" || rt == "" {
			t.Fatalf("exchange: access %q, refresh %q, %v", at, rt, err)
		}
		if _, _, err := p.IntrospectToken(ctx, at, fosite.AccessToken, openid.NewDefaultSession()); err != nil {
			t.Fatalf("the access token of the exchange does not introspect: %v", err)
		}
		if _, _, err := exchangeCode(ctx, p, codes[0]); !errors.Is(err, fosite.ErrInvalidGrant) {
			t.Fatalf("the code presented again: %v, want invalid_grant", err)
		}
		if _, _, err := p.IntrospectToken(ctx, at, fosite.AccessToken, openid.NewDefaultSession()); err == nil {
			t.Error("the access token of a replayed code is still active")
		}
		if _, _, err := p.IntrospectToken(ctx, rt, fosite.RefreshToken, openid.NewDefaultSession()); err == nil {
			t.Error("the refresh token of a replayed code is still active")
		}
	})
}

// TestFositeCodeExchangeBatched: concurrent code exchanges through the
// provider's handler share round trips and commits (fosite's handler
// makes a transaction of each).
func TestFositeCodeExchangeBatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rt := tracedStoreWith(t) // with its client cache, as served
	const n = 64
	p, codes := codeProvider(t, s, true, n)
	warm(t, s, "web") // cached before the count starts
	checkBatched(t, rt, n, func(i int) error {
		_, refresh, err := exchangeCode(ctx, p, codes[i])
		if err == nil && refresh == "" {
			err = errors.New("no refresh token")
		}
		return err
	})
}

// TestFositeCodeExchangeFallsBack: an exchange the one-statement write
// could not make (here the code's row lock outlasted the batch's lock
// bound, half the store deadline) is "not written", and the provider's
// handler then exchanges through fosite's transactional path, which waits
// for the lock: the client gets its tokens, and the code is used once.
func TestFositeCodeExchangeFallsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, _ := postgrestest.NewStore(t, postgres.WithTimeout(2*time.Second))
	p, codes := codeProvider(t, s, true, 1)
	lock := lockCodes(t, pool)
	defer lock.Rollback(ctx) //nolint:errcheck // committed below; a failed test leaves it to this
	type answer struct {
		access, refresh string
		err             error
	}
	done := make(chan answer, 1)
	go func() {
		at, rt, err := exchangeCode(ctx, p, codes[0])
		done <- answer{at, rt, err}
	}()
	awaitTransactionalPath(t, pool, "oauth2_authorization_codes", done)
	if err := lock.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil || a.access == "" || a.refresh == "" {
		t.Fatalf("exchange after the fallback: %+v", a)
	}
	if _, _, err := p.IntrospectToken(ctx, a.access, fosite.AccessToken, openid.NewDefaultSession()); err != nil {
		t.Errorf("the access token of the fallback does not introspect: %v", err)
	}
	var tokens int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM oauth2_access_tokens) + (SELECT count(*) FROM oauth2_refresh_tokens)`).Scan(&tokens); err != nil || tokens != 2 {
		t.Errorf("tokens stored: %d, %v; want 2 (the fallback's)", tokens, err)
	}
	if _, _, err := exchangeCode(ctx, p, codes[0]); !errors.Is(err, fosite.ErrInvalidGrant) {
		t.Errorf("the code presented again after the fallback: %v, want invalid_grant", err)
	}
}

// TestExchangeAndIssueCallerGone: a caller that stops waiting (its request
// ended) answers unavailable, so its client keeps the code; the exchange,
// committed after it left, is undone, and until then the code reads as
// unavailable, never as used.
func TestExchangeAndIssueCallerGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The batch's lock bound (half of this) outlasts the test's hold on the
	// code's row: the statement writes after its caller left.
	s, pool, _ := postgrestest.NewStore(t, postgres.WithTimeout(20*time.Second))
	seedCodes(t, s, 1, true)
	req := grantRequest(&storage.Client{ID: "web"}, "grant-0")

	// Hold the code's row so the exchange waits.
	lock := lockCodes(t, pool)
	defer lock.Rollback(ctx) //nolint:errcheck // committed below; a failed test leaves it to this
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	written, err := exchange(short, s, req, "code-0", "at-0", "rt-0")
	cancel()
	if written || !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("exchange whose caller gave up: written %v, %v; want ErrUnavailable", written, err)
	}
	if _, err := s.GetAuthorizeCodeSession(ctx, "code-0", openid.NewDefaultSession()); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("code-0 while its exchange is unsettled: %v, want ErrUnavailable", err)
	}
	if written, err := exchange(ctx, s, req, "code-0", "at-x", "rt-x"); written || !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("code-0 exchanged again while unsettled: written %v, %v; want ErrUnavailable", written, err)
	}
	if err := lock.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitCodeActive(t, s, "code-0")
	checkUndone(t, s, 1)
	if st, stored := tokenState(t, s, "rt-0", "at-0"); st != "absent" || stored {
		t.Errorf("tokens no answer handed out: refresh %s, access stored %v; want both gone", st, stored)
	}
	if written, err := exchange(ctx, s, req, "code-0", "at-1", "rt-1"); err != nil || !written {
		t.Errorf("the client's retry of code-0: written %v, %v", written, err)
	}
}

// lockCodes locks every authorization code's row in a transaction it
// returns, for the test to commit.
func lockCodes(t *testing.T, pool *pgxpool.Pool) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `SELECT 1 FROM oauth2_authorization_codes FOR UPDATE`); err != nil {
		lock.Rollback(ctx) //nolint:errcheck // the test ends here
		t.Fatal(err)
	}
	return lock
}

// TestUndoExchange: settling undoes a committed exchange (its tokens gone,
// the code unused), but not one whose revocation has begun: a replay's
// revocation deactivates the refresh token first, and from then on the
// code stays used whatever the access token's state; an exchange that
// issued no refresh token is witnessed by its access token.
func TestUndoExchange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _, _ := postgrestest.NewStore(t)
	seedCodes(t, s, 4, true)
	client := &storage.Client{ID: "web"}
	req := func(i int) *fosite.Request { return grantRequest(client, fmt.Sprintf("grant-%d", i)) }
	for i, rt := range []string{"rt-0", "rt-1", "", "rt-3"} {
		if written, err := exchange(ctx, s, req(i), fmt.Sprintf("code-%d", i), fmt.Sprintf("at-%d", i), rt); err != nil || !written {
			t.Fatalf("exchange %d: written %v, %v", i, written, err)
		}
	}
	undo := func(i int, refresh ...string) {
		t.Helper()
		if err := postgres.UndoExchange(ctx, s, fmt.Sprintf("code-%d", i), []string{fmt.Sprintf("at-%d", i)}, refresh); err != nil {
			t.Fatalf("undo %d: %v", i, err)
		}
	}

	undo(0, "rt-0")
	if st, stored := tokenState(t, s, "rt-0", "at-0"); st != "absent" || stored || codeState(t, s, "code-0") != "active" {
		t.Errorf("undone exchange: refresh %s, access stored %v, code %s; want absent, false, active", st, stored, codeState(t, s, "code-0"))
	}
	undo(0, "rt-0") // nothing left to undo
	checkUndone(t, s, 1)

	if err := s.RevokeRefreshToken(ctx, "grant-1"); err != nil { // a replay's revocation, first half
		t.Fatal(err)
	}
	undo(1, "rt-1")
	if _, stored := tokenState(t, s, "-", "at-1"); !stored || codeState(t, s, "code-1") != "used" {
		t.Errorf("exchange being revoked: access stored %v, code %s; want untouched, used", stored, codeState(t, s, "code-1"))
	}

	if err := s.RevokeAccessToken(ctx, "grant-2"); err != nil {
		t.Fatal(err)
	}
	undo(2)
	if st := codeState(t, s, "code-2"); st != "used" {
		t.Errorf("revoked access-only exchange: code %s, want used", st)
	}
	undo(3, "rt-3")
	if st := codeState(t, s, "code-3"); st != "active" {
		t.Errorf("undone exchange 3: code %s, want active", st)
	}
	checkUndone(t, s, 2)
}
