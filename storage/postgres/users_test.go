package postgres_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// A login linked in a caller's transaction that has not committed yet must
// hold back the person's concurrent login in another app until it ends:
// joining the uncommitted user would leave the second identity on a user
// that a rollback then removes, and not waiting would create a second user.
func TestLinkWaitsForUncommittedLink(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, _, _ := postgrestest.NewStore(t)
			tx := mustBegin(t, ctx, s)
			first := &storage.WeChatIdentity{AppID: "wxa", OpenID: "o-a", UnionID: "union-1", SessionKey: []byte("k1")}
			if _, err := s.LinkWeChatIdentity(tx, first, "user-1"); err != nil {
				t.Fatal(err)
			}

			type result struct {
				u   *storage.User
				err error
			}
			done := make(chan result, 1)
			go func() {
				second := &storage.WeChatIdentity{AppID: "wxb", OpenID: "o-b", UnionID: "union-1", SessionKey: []byte("k2")}
				u, err := s.LinkWeChatIdentity(ctx, second, "user-2")
				done <- result{u, err}
			}()
			select {
			case r := <-done:
				t.Fatalf("second link returned %+v, %v while the first was uncommitted; want it to wait", r.u, r.err)
			case <-time.After(300 * time.Millisecond):
			}

			want := "user-2"
			if commit {
				want = "user-1"
				if err := s.Commit(tx); err != nil {
					t.Fatal(err)
				}
			} else if err := s.Rollback(tx); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil || r.u.ID != want {
				t.Fatalf("second link = %+v, %v; want user %s", r.u, r.err, want)
			}
		})
	}
}

// Nothing deletes expired wx.login codes but the claims themselves, so
// claims must keep the table from growing without bound.
func TestClaimDropsExpiredCodes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool, _ := postgrestest.NewStore(t)
	_, err := pool.Exec(ctx, `INSERT INTO wechat_codes (app_id, code_hash, expires_at)
		SELECT 'wxa', 'old-' || i, now() - interval '1 hour' FROM generate_series(1, 20) i`)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := s.ClaimWeChatCode(ctx, "wxa", fmt.Sprintf("new-%d", i), time.Now().Add(5*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	var expired, live int
	err = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE expires_at <= now()), count(*) FILTER (WHERE expires_at > now())
		FROM wechat_codes`).Scan(&expired, &live)
	if err != nil {
		t.Fatal(err)
	}
	if expired != 0 || live != 5 {
		t.Errorf("after 5 claims: %d expired and %d live codes stored, want 0 and 5", expired, live)
	}
}

// The unionid's holder is recorded once and never moves: an identity that
// gains a unionid someone else holds keeps its user without taking it over.
func TestUnionHolderRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool, _ := postgrestest.NewStore(t)
	link := func(app, openID, unionID, newUserID string) {
		t.Helper()
		if _, err := s.LinkWeChatIdentity(ctx, &storage.WeChatIdentity{AppID: app, OpenID: openID, UnionID: unionID}, newUserID); err != nil {
			t.Fatal(err)
		}
	}
	link("wxa", "o-a", "", "user-1")
	link("wxb", "o-b", "union-1", "user-2")
	link("wxa", "o-a", "union-1", "user-x")
	link("wxc", "o-c", "", "user-3")
	link("wxc", "o-c", "union-3", "user-y")
	rows, err := pool.Query(ctx, `SELECT union_id || '=' || user_id FROM wechat_unions ORDER BY union_id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := "[union-1=user-2 union-3=user-3]"; fmt.Sprint(got) != want {
		t.Errorf("wechat_unions = %v, want %s", got, want)
	}
	var users int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&users); err != nil || users != 3 {
		t.Errorf("users: %d, %v; want 3", users, err)
	}
}

// A link that fails inside the caller's transaction must leave that
// transaction usable for the caller's own error handling: only its
// savepoint is rolled back.
func TestLinkFailureKeepsCallerTx(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _, _ := postgrestest.NewStore(t)
	if _, err := s.LinkWeChatIdentity(ctx, &storage.WeChatIdentity{AppID: "wxa", OpenID: "o-a"}, "user-1"); err != nil {
		t.Fatal(err)
	}
	tx := mustBegin(t, ctx, s)
	newTestClient(t, tx, s, "a")
	// A new identity given an ID that is taken fails on users' key.
	_, err := s.LinkWeChatIdentity(tx, &storage.WeChatIdentity{AppID: "wxb", OpenID: "o-b"}, "user-1")
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("link with a taken new user ID: %v, want ErrAlreadyExists", err)
	}
	if err := s.Commit(tx); err != nil {
		t.Fatalf("Commit after the failed link: %v", err)
	}
	if _, err := s.LookupClient(ctx, "a"); err != nil {
		t.Errorf("client created before the failed link: %v", err)
	}
	if _, err := s.GetWeChatIdentity(ctx, "wxb", "o-b"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("identity of the failed link: %v, want ErrNotFound", err)
	}
}
