package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// returningLogin runs s.ReturningLogin for id and user, issuing access
// token at and refresh token rt as a login does.
func returningLogin(ctx context.Context, s *postgres.Store, client *storage.Client, id *storage.WeChatIdentity, user *storage.User, at, rt string) (bool, error) {
	req := grantRequest(client, "grant-"+at)
	req.Session.(*openid.DefaultSession).Subject = user.ID
	return s.ReturningLogin(ctx, id, user, func(ctx context.Context) error {
		if err := s.CreateAccessTokenSession(ctx, at, req); err != nil {
			return err
		}
		return s.CreateRefreshTokenSession(ctx, rt, at, req)
	})
}

// TestReturningLogin: a returning user's login writes its identity and
// tokens in one statement only while the identity still belongs to the user
// read before and the user is enabled; otherwise it writes nothing. Logins
// of many users at once share round trips.
func TestReturningLogin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rt := tracedStore(t)
	client := &storage.Client{ID: "mp"}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	link := func(openID, unionID string) (*storage.WeChatIdentity, *storage.User) {
		t.Helper()
		id := &storage.WeChatIdentity{AppID: "wxa", OpenID: openID, UnionID: unionID, SessionKey: []byte("k0")}
		u, err := s.LinkWeChatIdentity(ctx, id, "user-"+openID)
		if err != nil {
			t.Fatal(err)
		}
		return &storage.WeChatIdentity{AppID: "wxa", OpenID: openID, UnionID: unionID, SessionKey: []byte("k1")}, u
	}
	tokenExists := func(at string) bool {
		_, err := s.GetAccessTokenSession(ctx, at, openid.NewDefaultSession())
		if err != nil && !errors.Is(err, fosite.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	id, user := link("o-1", "union-1")
	if u, err := s.ReturningUser(ctx, id); err != nil || u.ID != user.ID {
		t.Fatalf("ReturningUser: %v, %v, want %s", u, err, user.ID)
	}
	written, err := returningLogin(ctx, s, client, id, user, "at-1", "rt-1")
	if err != nil || !written {
		t.Fatalf("ReturningLogin: written %v, %v", written, err)
	}
	if !tokenExists("at-1") {
		t.Error("the access token of a written login is missing")
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt-1", openid.NewDefaultSession()); err != nil {
		t.Errorf("the refresh token of a written login: %v", err)
	}
	if got, err := s.GetWeChatIdentity(ctx, "wxa", "o-1"); err != nil || string(got.SessionKey) != "k1" {
		t.Errorf("session key after the login: %v, %v, want k1", got, err)
	}

	// Not written, nothing left behind: another user read before, a
	// unionid the identity does not hold, an unknown identity.
	for _, c := range []struct {
		name string
		id   *storage.WeChatIdentity
		user *storage.User
	}{
		{"another user", id, &storage.User{ID: "user-other"}},
		{"new unionid", &storage.WeChatIdentity{AppID: "wxa", OpenID: "o-1", UnionID: "union-2"}, user},
		{"unknown identity", &storage.WeChatIdentity{AppID: "wxa", OpenID: "o-404"}, user},
	} {
		at := "at-" + c.name
		if written, err := returningLogin(ctx, s, client, c.id, c.user, at, "rt-"+c.name); err != nil || written {
			t.Errorf("%s: written %v, %v, want nothing written", c.name, written, err)
		}
		if tokenExists(at) {
			t.Errorf("%s: a token was stored", c.name)
		}
	}
	if _, err := s.ReturningUser(ctx, &storage.WeChatIdentity{AppID: "wxa", OpenID: "o-1", UnionID: "union-2"}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ReturningUser with a new unionid: %v, want ErrNotFound", err)
	}

	// A statement that fails (here an access token already stored) wrote
	// nothing: "not written", for the transactional path to decide, not an
	// error that would answer the login by itself.
	id.SessionKey = []byte("k-failed")
	if written, err := returningLogin(ctx, s, client, id, user, "at-1", "rt-dup"); err != nil || written {
		t.Errorf("login whose statement fails: written %v, %v, want not written and no error", written, err)
	}
	if got, err := s.GetWeChatIdentity(ctx, "wxa", "o-1"); err != nil || string(got.SessionKey) != "k1" {
		t.Errorf("session key after a failed statement: %v, %v, want k1 still", got, err)
	}
	id.SessionKey = []byte("k1")

	// Disabled between the read and the write: nothing written.
	if _, err := s.SetUserDisabled(ctx, user.ID, true); err != nil {
		t.Fatal(err)
	}
	if written, err := returningLogin(ctx, s, client, id, user, "at-disabled", "rt-disabled"); err != nil || written {
		t.Errorf("login of a disabled user: written %v, %v, want nothing written", written, err)
	}
	if tokenExists("at-disabled") {
		t.Error("a disabled user's login stored a token")
	}
	if _, err := s.ReturningUser(ctx, id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ReturningUser of a disabled user: %v, want ErrNotFound", err)
	}

	// Many users at once.
	const n = 64
	ids, users := make([]*storage.WeChatIdentity, n), make([]*storage.User, n)
	for i := range n {
		ids[i], users[i] = link(fmt.Sprintf("o-many-%d", i), "")
	}
	checkBatched(t, rt, 2*n, func(i int) error { // and as many unknown identities
		id := &storage.WeChatIdentity{AppID: "wxa", OpenID: fmt.Sprintf("o-many-%d", i)}
		u, err := s.ReturningUser(ctx, id)
		switch {
		case i >= n:
			if !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("ReturningUser(%s, unknown): %v, %v, want ErrNotFound", id.OpenID, u, err)
			}
		case err != nil || u.ID != users[i].ID:
			return fmt.Errorf("ReturningUser(%s): %v, %v, want %s", id.OpenID, u, err, users[i].ID)
		}
		return nil
	})
	checkBatched(t, rt, n, func(i int) error {
		written, err := returningLogin(ctx, s, client, ids[i], users[i], fmt.Sprintf("at-many-%d", i), fmt.Sprintf("rt-many-%d", i))
		if err != nil || !written {
			return fmt.Errorf("login %d: written %v, %v", i, written, err)
		}
		return nil
	})
	for i := range n {
		if !tokenExists(fmt.Sprintf("at-many-%d", i)) {
			t.Errorf("login %d: its access token is missing", i)
		}
	}
}

// TestReturningLoginRaces: returning logins racing a disable or an erasure
// leave no token behind once it has returned (each login either wrote
// before it, and it deleted the login's tokens, or wrote nothing), and
// neither side fails: they take their locks in the same order.
func TestReturningLoginRaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, _ := postgrestest.NewStore(t)
	client := &storage.Client{ID: "mp"}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	for name, op := range disableOrErase(ctx, s) {
		for round := range 4 {
			openID := fmt.Sprintf("o-%s-%d", name, round)
			id := &storage.WeChatIdentity{AppID: "wxa", OpenID: openID, SessionKey: []byte("k")}
			user, err := s.LinkWeChatIdentity(ctx, id, "user-"+openID)
			if err != nil {
				t.Fatal(err)
			}
			// The same user's identity in another app, so one batch
			// can hold two of its identities.
			id2 := &storage.WeChatIdentity{AppID: "wxb", OpenID: openID}
			if _, err := pool.Exec(ctx, `INSERT INTO wechat_identities (app_id, open_id, user_id, created_at, updated_at)
				VALUES ($1, $2, $3, now(), now())`, id2.AppID, id2.OpenID, user.ID); err != nil {
				t.Fatal(err)
			}
			const logins = 16
			errs := make(chan error, logins+1)
			var wg sync.WaitGroup
			for i := range logins {
				wg.Go(func() {
					login := id
					if i%2 == 1 {
						login = id2
					}
					at := fmt.Sprintf("at-%s-%d-%d", name, round, i)
					if _, err := returningLogin(ctx, s, client, login, user, at, "rt"+at[2:]); err != nil {
						errs <- fmt.Errorf("login %s: %v", at, err)
					}
				})
				if i == logins/2 {
					wg.Go(func() {
						if err := op(user.ID); err != nil {
							errs <- fmt.Errorf("%s: %v", name, err)
						}
					})
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if left := tokensLeft(t, pool, user.ID); left != 0 {
				t.Errorf("%s, round %d: %d tokens of the user left", name, round, left)
			}
		}
	}
}

// tokensLeft counts the access tokens and active refresh tokens of a user.
func tokensLeft(t *testing.T, pool *pgxpool.Pool, userID string) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM oauth2_access_tokens WHERE subject = $1)
		+ (SELECT count(*) FROM oauth2_refresh_tokens WHERE subject = $1 AND active)`, userID).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// disableOrErase are the two ends of a user that the batched writes race
// (returning logins, refresh rotations), by name.
func disableOrErase(ctx context.Context, s *postgres.Store) map[string]func(userID string) error {
	return map[string]func(userID string) error{
		"disable": func(userID string) error { _, err := s.SetUserDisabled(ctx, userID, true); return err },
		"erase":   func(userID string) error { return s.EraseUser(ctx, userID) },
	}
}
