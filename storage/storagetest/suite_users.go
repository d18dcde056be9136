package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// Two mini-programs bound to one Open Platform account: a person has one
// openid in each and the same unionid in both.
const (
	appA = "wxappa"
	appB = "wxappb"
	appC = "wxappc"
)

// login is one successful code2Session answer as the provider links it.
type login struct {
	app, openID, unionID string
	newUserID            string
}

func (l login) identity() *storage.WeChatIdentity {
	return &storage.WeChatIdentity{
		AppID: l.app, OpenID: l.openID, UnionID: l.unionID,
		SessionKey: []byte("sealed-key-" + l.newUserID),
	}
}

func mustLink(t *testing.T, ctx context.Context, s storage.Store, l login) (*storage.User, *storage.WeChatIdentity) {
	t.Helper()
	id := l.identity()
	u, err := s.LinkWeChatIdentity(ctx, id, l.newUserID)
	if err != nil {
		t.Fatalf("LinkWeChatIdentity(%+v): %v", l, err)
	}
	if u == nil || u.ID == "" || id.UserID != u.ID {
		t.Fatalf("LinkWeChatIdentity(%+v) = user %+v, identity UserID %q; want a user and its ID filled in", l, u, id.UserID)
	}
	return u, id
}

// checkLinksTo fails unless l links to the user wantID.
func checkLinksTo(t *testing.T, ctx context.Context, s storage.Store, l login, wantID string) *storage.WeChatIdentity {
	t.Helper()
	u, id := mustLink(t, ctx, s, l)
	if u.ID != wantID {
		t.Errorf("LinkWeChatIdentity(%+v) = user %q, want %q", l, u.ID, wantID)
	}
	return id
}

// checkNoUser fails unless user id does not exist: a link that joined
// another user must not leave its unused new user behind.
func checkNoUser(t *testing.T, ctx context.Context, s storage.Store, id string) {
	t.Helper()
	if u, err := s.GetUser(ctx, id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetUser(%q) = %+v, %v; want ErrNotFound", id, u, err)
	}
}

// checkIdentity compares the stored identity with the fields that matter.
func checkIdentity(t *testing.T, ctx context.Context, s storage.Store, app, openID, wantUnion, wantUser string, wantKey []byte) *storage.WeChatIdentity {
	t.Helper()
	got, err := s.GetWeChatIdentity(ctx, app, openID)
	if err != nil {
		t.Fatalf("GetWeChatIdentity(%s, %s): %v", app, openID, err)
	}
	if got.AppID != app || got.OpenID != openID || got.UnionID != wantUnion || got.UserID != wantUser ||
		!bytes.Equal(got.SessionKey, wantKey) {
		t.Errorf("identity = {%s %s union %q user %q key %q}, want {%s %s union %q user %q key %q}",
			got.AppID, got.OpenID, got.UnionID, got.UserID, got.SessionKey, app, openID, wantUnion, wantUser, wantKey)
	}
	return got
}

func testUsers(t *testing.T, su suite) {
	su.run(t, "FirstLoginCreatesUser", func(t *testing.T, ctx context.Context, s storage.Store) {
		before := time.Now()
		l := login{appA, "o-a", "", "user-1"}
		u, id := mustLink(t, ctx, s, l)
		after := time.Now()
		if u.ID != "user-1" || u.PhoneNumber != "" {
			t.Errorf("user = %+v, want ID user-1 and no phone", u)
		}
		checkRecent(t, "user CreatedAt", u.CreatedAt, before, after)
		checkRecent(t, "user UpdatedAt", u.UpdatedAt, before, after)
		checkRecent(t, "identity CreatedAt", id.CreatedAt, before, after)
		checkRecent(t, "identity UpdatedAt", id.UpdatedAt, before, after)
		got, err := s.GetUser(ctx, "user-1")
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		if *got != *u {
			t.Errorf("GetUser = %+v, want what LinkWeChatIdentity returned, %+v", got, u)
		}
		stored := checkIdentity(t, ctx, s, appA, "o-a", "", "user-1", l.identity().SessionKey)
		if !stored.CreatedAt.Equal(id.CreatedAt) || !stored.UpdatedAt.Equal(id.UpdatedAt) {
			t.Errorf("stored identity times = %v, %v; want the returned %v, %v",
				stored.CreatedAt, stored.UpdatedAt, id.CreatedAt, id.UpdatedAt)
		}
	})

	// WeChat keeps one valid session_key per user and any wx.login may
	// rotate it, so the stored one is always the latest.
	su.run(t, "SecondLoginSameUserNewSessionKey", func(t *testing.T, ctx context.Context, s storage.Store) {
		_, first := mustLink(t, ctx, s, login{appA, "o-a", "", "user-1"})
		second := login{appA, "o-a", "", "user-2"}
		id := checkLinksTo(t, ctx, s, second, "user-1")
		checkNoUser(t, ctx, s, "user-2")
		stored := checkIdentity(t, ctx, s, appA, "o-a", "", "user-1", second.identity().SessionKey)
		if !stored.CreatedAt.Equal(first.CreatedAt) || !id.CreatedAt.Equal(first.CreatedAt) {
			t.Errorf("CreatedAt after the second login = %v (returned %v), want the first login's %v",
				stored.CreatedAt, id.CreatedAt, first.CreatedAt)
		}
		if stored.UpdatedAt.Before(first.UpdatedAt) {
			t.Errorf("UpdatedAt went back: %v before %v", stored.UpdatedAt, first.UpdatedAt)
		}
	})

	// The session_key vault finds a token's user's identity by app.
	su.run(t, "UserWeChatIdentity", func(t *testing.T, ctx context.Context, s storage.Store) {
		mustLink(t, ctx, s, login{appA, "o-a", "union-1", "user-1"})
		b := login{appB, "o-b", "union-1", "user-2"}
		checkLinksTo(t, ctx, s, b, "user-1")
		mustLink(t, ctx, s, login{appA, "o-other", "", "user-3"})
		for app, want := range map[string]string{appA: "o-a", appB: "o-b"} {
			id, err := s.UserWeChatIdentity(ctx, "user-1", app)
			if err != nil || id.OpenID != want || id.UserID != "user-1" || id.AppID != app || id.UnionID != "union-1" {
				t.Errorf("UserWeChatIdentity(user-1, %s) = %+v, %v; want openid %s", app, id, err, want)
			}
		}
		if id, err := s.UserWeChatIdentity(ctx, "user-1", appA); err == nil && !bytes.Equal(id.SessionKey, login{appA, "o-a", "union-1", "user-1"}.identity().SessionKey) {
			t.Errorf("session key = %q", id.SessionKey)
		}
		if _, err := s.UserWeChatIdentity(ctx, "user-3", appB); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("a user without an identity in the app: %v, want ErrNotFound", err)
		}
		if _, err := s.UserWeChatIdentity(ctx, "nobody", appA); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("an unknown user: %v, want ErrNotFound", err)
		}
	})

	su.run(t, "UnionIDJoinsAcrossApps", func(t *testing.T, ctx context.Context, s storage.Store) {
		mustLink(t, ctx, s, login{appA, "o-a", "union-1", "user-1"})
		b := login{appB, "o-b", "union-1", "user-2"}
		checkLinksTo(t, ctx, s, b, "user-1")
		checkNoUser(t, ctx, s, "user-2")
		checkIdentity(t, ctx, s, appB, "o-b", "union-1", "user-1", b.identity().SessionKey)
		// A different person in app B is someone else.
		checkLinksTo(t, ctx, s, login{appB, "o-b2", "union-2", "user-3"}, "user-3")
	})

	// Without a unionid nothing says two openids are one person.
	su.run(t, "NoUnionIDStaysSeparate", func(t *testing.T, ctx context.Context, s storage.Store) {
		checkLinksTo(t, ctx, s, login{appA, "o-a", "", "user-1"}, "user-1")
		checkLinksTo(t, ctx, s, login{appB, "o-b", "", "user-2"}, "user-2")
		// The same openid string in another app is another identity.
		checkLinksTo(t, ctx, s, login{appB, "o-a", "", "user-3"}, "user-3")
	})

	// Binding the app to an Open Platform account later must not change
	// anyone's subject (Casdoor #1056, #2613 keyed users on "unionid else
	// openid" and split or duplicated them).
	su.run(t, "GainsUnionIDKeepsUser", func(t *testing.T, ctx context.Context, s storage.Store) {
		mustLink(t, ctx, s, login{appA, "o-a", "", "user-1"})
		id := checkLinksTo(t, ctx, s, login{appA, "o-a", "union-1", "user-x"}, "user-1")
		if id.UnionID != "union-1" {
			t.Errorf("returned identity UnionID = %q, want union-1", id.UnionID)
		}
		checkNoUser(t, ctx, s, "user-x")
		checkIdentity(t, ctx, s, appA, "o-a", "union-1", "user-1", []byte("sealed-key-user-x"))
		// The recorded unionid now joins the person's first login elsewhere.
		checkLinksTo(t, ctx, s, login{appB, "o-b", "union-1", "user-2"}, "user-1")
		// A later answer without unionid does not forget it.
		id = checkLinksTo(t, ctx, s, login{appA, "o-a", "", "user-y"}, "user-1")
		if id.UnionID != "union-1" {
			t.Errorf("identity UnionID after a login without one = %q, want union-1 kept", id.UnionID)
		}
		checkIdentity(t, ctx, s, appA, "o-a", "union-1", "user-1", []byte("sealed-key-user-y"))
	})

	// The person already has a second user through app B; app A's identity
	// gaining the unionid keeps its own user (tokens were issued for it),
	// and the unionid keeps joining the user that held it first.
	su.run(t, "GainsUnionIDHeldByAnotherUser", func(t *testing.T, ctx context.Context, s storage.Store) {
		mustLink(t, ctx, s, login{appA, "o-a", "", "user-1"})
		checkLinksTo(t, ctx, s, login{appB, "o-b", "union-1", "user-2"}, "user-2")
		checkLinksTo(t, ctx, s, login{appA, "o-a", "union-1", "user-x"}, "user-1")
		checkIdentity(t, ctx, s, appA, "o-a", "union-1", "user-1", []byte("sealed-key-user-x"))
		checkLinksTo(t, ctx, s, login{appC, "o-c", "union-1", "user-3"}, "user-2")
		checkNoUser(t, ctx, s, "user-x")
		checkNoUser(t, ctx, s, "user-3")
	})

	su.run(t, "NotFound", func(t *testing.T, ctx context.Context, s storage.Store) {
		checkNoUser(t, ctx, s, "user-1")
		if _, err := s.GetWeChatIdentity(ctx, appA, "o-a"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetWeChatIdentity of an unknown identity: %v, want ErrNotFound", err)
		}
		if err := s.SetUserPhone(ctx, "user-1", "+8613800138000"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("SetUserPhone of an unknown user: %v, want ErrNotFound", err)
		}
		mustLink(t, ctx, s, login{appA, "o-a", "", "user-1"})
		if _, err := s.GetWeChatIdentity(ctx, appB, "o-a"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetWeChatIdentity of the openid under another app: %v, want ErrNotFound", err)
		}
	})

	su.run(t, "SetUserPhone", func(t *testing.T, ctx context.Context, s storage.Store) {
		u, _ := mustLink(t, ctx, s, login{appA, "o-a", "", "user-1"})
		const phone = "+8613800138000"
		if err := s.SetUserPhone(ctx, "user-1", phone); err != nil {
			t.Fatalf("SetUserPhone: %v", err)
		}
		got, err := s.GetUser(ctx, "user-1")
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		if got.PhoneNumber != phone || !got.CreatedAt.Equal(u.CreatedAt) || got.UpdatedAt.Before(u.UpdatedAt) {
			t.Errorf("user after SetUserPhone = %+v, want phone %s, CreatedAt %v, UpdatedAt not before %v",
				got, phone, u.CreatedAt, u.UpdatedAt)
		}
		// The next login returns the user with the number.
		again, _ := mustLink(t, ctx, s, login{appA, "o-a", "", "user-2"})
		if again.PhoneNumber != phone {
			t.Errorf("user returned by the next login has phone %q, want %q", again.PhoneNumber, phone)
		}
	})

	// What a caller gets back is its own: changing it must not reach the
	// store.
	su.run(t, "ReturnsCopies", func(t *testing.T, ctx context.Context, s storage.Store) {
		l := login{appA, "o-a", "", "user-1"}
		id := l.identity()
		if _, err := s.LinkWeChatIdentity(ctx, id, l.newUserID); err != nil {
			t.Fatalf("LinkWeChatIdentity: %v", err)
		}
		id.SessionKey[0] ^= 0xff
		got, err := s.GetWeChatIdentity(ctx, appA, "o-a")
		if err != nil {
			t.Fatalf("GetWeChatIdentity: %v", err)
		}
		got.SessionKey[0] ^= 0xff
		checkIdentity(t, ctx, s, appA, "o-a", "", "user-1", l.identity().SessionKey)
	})
}

// testUserRaces covers first logins racing each other. A person opening a
// mini-program fires several requests at once, and the provider links each
// inside the transaction that stores its tokens, so the cases run both with
// and without one.
func testUserRaces(t *testing.T, su suite) {
	for _, inTx := range []bool{false, true} {
		name := "NoTx"
		if inTx {
			name = "InTx"
		}
		// Every login of one identity must land on one user, whichever of
		// the new user IDs won.
		su.run(t, "SameIdentity/"+name, func(t *testing.T, ctx context.Context, s storage.Store) {
			const n = 20
			logins := make([]login, n)
			for i := range logins {
				logins[i] = login{appA, "o-a", "", fmt.Sprintf("user-%02d", i)}
			}
			users, errs := raceLogins(ctx, s, logins, inTx)
			winner := checkOneUser(t, ctx, s, users, errs, logins)
			// Which login wrote the session key last is up to the scheduler.
			if got, err := s.GetWeChatIdentity(ctx, appA, "o-a"); err != nil || got.UserID != winner {
				t.Errorf("identity = %+v, %v; want user %s", got, err, winner)
			}
		})

		// One person's first logins in two apps sharing a unionid must
		// make one user, not one per app.
		su.run(t, "SameUnionIDTwoApps/"+name, func(t *testing.T, ctx context.Context, s storage.Store) {
			const n = 10
			logins := make([]login, n)
			for i := range logins {
				app, openID := appA, "o-a"
				if i%2 == 1 {
					app, openID = appB, "o-b"
				}
				logins[i] = login{app, openID, "union-1", fmt.Sprintf("user-%02d", i)}
			}
			users, errs := raceLogins(ctx, s, logins, inTx)
			winner := checkOneUser(t, ctx, s, users, errs, logins)
			for _, app := range []struct{ id, openID string }{{appA, "o-a"}, {appB, "o-b"}} {
				got, err := s.GetWeChatIdentity(ctx, app.id, app.openID)
				if err != nil || got.UserID != winner || got.UnionID != "union-1" {
					t.Errorf("identity %s/%s = %+v, %v; want user %s, union-1", app.id, app.openID, got, err, winner)
				}
			}
			// A later login in a third app joins the same user too.
			checkLinksTo(t, ctx, s, login{appC, "o-c", "union-1", "user-late"}, winner)
		})

		// The app is bound to an Open Platform account while the person
		// logs in: app A's answers carry the unionid only sometimes. Which
		// user app B joins depends on the order, but each identity must
		// keep one user, no login may fail (a deadlock among them would),
		// and no unused user may be left behind.
		su.run(t, "UnionIDAppearing/"+name, func(t *testing.T, ctx context.Context, s storage.Store) {
			const n = 20
			logins := make([]login, n)
			for i := range logins {
				switch i % 4 {
				case 0:
					logins[i] = login{appA, "o-a", "", fmt.Sprintf("user-%02d", i)}
				case 1:
					logins[i] = login{appA, "o-a", "union-1", fmt.Sprintf("user-%02d", i)}
				default:
					logins[i] = login{appB, "o-b", "union-1", fmt.Sprintf("user-%02d", i)}
				}
			}
			users, errs := raceLogins(ctx, s, logins, inTx)
			owner := map[string]string{} // app -> user
			for i, err := range errs {
				if err != nil {
					t.Fatalf("login #%d: %v", i, err)
				}
				if prev, ok := owner[logins[i].app]; ok && prev != users[i] {
					t.Errorf("login #%d in %s returned user %q, an earlier one %q", i, logins[i].app, users[i], prev)
				}
				owner[logins[i].app] = users[i]
			}
			for _, l := range logins {
				if l.newUserID != owner[appA] && l.newUserID != owner[appB] {
					checkNoUser(t, ctx, s, l.newUserID)
				}
			}
			if got, err := s.GetWeChatIdentity(ctx, appA, "o-a"); err != nil || got.UnionID != "union-1" || got.UserID != owner[appA] {
				t.Errorf("identity in app A = %+v, %v; want union-1 recorded, user %s", got, err, owner[appA])
			}
			// Whoever holds the unionid, a new app joins app B's user:
			// app B's identity was created with it, so it joined the
			// holder or became it.
			checkLinksTo(t, ctx, s, login{appC, "o-c", "union-1", "user-late"}, owner[appB])
		})
	}
}

// raceLogins links every login at once, each in its own transaction when
// inTx, and returns the user IDs and errors.
func raceLogins(ctx context.Context, s storage.Store, logins []login, inTx bool) ([]string, []error) {
	users := make([]string, len(logins))
	errs := parallel(len(logins), func(i int) error {
		lctx := ctx
		if inTx {
			var err error
			if lctx, err = s.BeginTX(ctx); err != nil {
				return err
			}
		}
		u, err := s.LinkWeChatIdentity(lctx, logins[i].identity(), logins[i].newUserID)
		if inTx {
			if err != nil {
				_ = s.Rollback(lctx)
				return err
			}
			err = s.Commit(lctx)
		}
		if err == nil {
			users[i] = u.ID
		}
		return err
	})
	return users, errs
}

// checkOneUser fails unless every login succeeded and returned one user,
// and the new user IDs of all the others were never stored; it returns the
// user's ID.
func checkOneUser(t *testing.T, ctx context.Context, s storage.Store, got []string, errs []error, logins []login) string {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("login #%d: %v", i, err)
		}
	}
	winner := got[0]
	for i, id := range got {
		if id != winner {
			t.Errorf("login #%d returned user %q, login #0 %q: want one user", i, id, winner)
		}
	}
	for _, l := range logins {
		if l.newUserID != winner {
			checkNoUser(t, ctx, s, l.newUserID)
		}
	}
	if _, err := s.GetUser(ctx, winner); err != nil {
		t.Errorf("GetUser of the winner %q: %v", winner, err)
	}
	return winner
}
