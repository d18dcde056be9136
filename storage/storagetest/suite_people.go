package storagetest

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
)

// userRequest is newRequest with the session's subject set to userID, as
// the provider issues tokens for a user; a non-zero at replaces its
// RequestedAt (a whole second, so it compares exactly).
func userRequest(c *storage.Client, id, userID string, at time.Time) *fosite.Request {
	r := newRequest(c, id)
	r.Session = newSession(userID)
	if !at.IsZero() {
		r.RequestedAt = at
	}
	return r
}

// userIDs lists the users' IDs in order.
func userIDs(users []storage.User) []string {
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = u.ID
	}
	return out
}

// usersNewestFirst reads the users and returns their IDs in the order
// ListUsers must return them: by (CreatedAt, ID), newest first. Built from
// what the store stamped, it holds whether or not two users share a
// CreatedAt.
func usersNewestFirst(t *testing.T, ctx context.Context, s storage.Store, ids ...string) []string {
	t.Helper()
	users := make([]storage.User, 0, len(ids))
	for _, id := range ids {
		u, err := s.GetUser(ctx, id)
		if err != nil {
			t.Fatalf("GetUser(%s): %v", id, err)
		}
		users = append(users, *u)
	}
	slices.SortFunc(users, func(a, b storage.User) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(b.ID, a.ID))
	})
	return userIDs(users)
}

// only keeps the IDs of order that are among keep, in order's order.
func only(order []string, keep ...string) []string {
	out := []string{}
	for _, id := range order {
		if slices.Contains(keep, id) {
			out = append(out, id)
		}
	}
	return out
}

// checkList fails unless ListUsers(f) returns exactly the users want, in
// that order.
func checkList(t *testing.T, ctx context.Context, s storage.Store, what string, f storage.UserFilter, want []string) {
	t.Helper()
	got, err := s.ListUsers(ctx, f, nil, 100)
	if err != nil {
		t.Fatalf("%s: ListUsers(%+v): %v", what, f, err)
	}
	if !sameStrings(userIDs(got), want) {
		t.Errorf("%s: ListUsers(%+v) = %q, want %q", what, f, userIDs(got), want)
	}
}

// listAllUsers pages through ListUsers with limit per page and returns the
// IDs in the order the pages gave them.
func listAllUsers(t *testing.T, ctx context.Context, s storage.Store, f storage.UserFilter, limit int) []string {
	t.Helper()
	var (
		all   []string
		after *storage.UserCursor
	)
	for range 100 {
		page, err := s.ListUsers(ctx, f, after, limit)
		if err != nil {
			t.Fatalf("ListUsers: %v", err)
		}
		if len(page) > limit {
			t.Fatalf("ListUsers returned %d users, limit %d", len(page), limit)
		}
		all = append(all, userIDs(page)...)
		if len(page) < limit {
			return all
		}
		last := page[len(page)-1]
		after = &storage.UserCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	t.Fatal("ListUsers never ran out of pages")
	return nil
}

// checkUser compares every field of a user.
func checkUser(t *testing.T, what string, got, want *storage.User) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: user is nil, want %+v", what, want)
	}
	g, w := *got, *want
	for _, tm := range []struct {
		name      string
		got, want time.Time
	}{
		{"ProfileUpdatedAt", g.ProfileUpdatedAt, w.ProfileUpdatedAt}, {"DisabledAt", g.DisabledAt, w.DisabledAt},
		{"CreatedAt", g.CreatedAt, w.CreatedAt}, {"UpdatedAt", g.UpdatedAt, w.UpdatedAt},
	} {
		if !tm.got.Equal(tm.want) || tm.got.IsZero() != tm.want.IsZero() {
			t.Errorf("%s: %s = %v, want %v", what, tm.name, tm.got, tm.want)
		}
	}
	if g.ID != w.ID || g.PhoneNumber != w.PhoneNumber || g.Nickname != w.Nickname || g.Picture != w.Picture {
		t.Errorf("%s: user = %+v, want %+v", what, g, w)
	}
}

// checkStoredUser fails unless GetUser returns want.
func checkStoredUser(t *testing.T, ctx context.Context, s storage.Store, what string, want *storage.User) {
	t.Helper()
	got, err := s.GetUser(ctx, want.ID)
	if err != nil {
		t.Fatalf("%s: GetUser(%s): %v", what, want.ID, err)
	}
	checkUser(t, what+": stored", got, want)
}

// mustGrant stores, for the user, everything disabling or erasing them must
// delete, tagged so two users' grants differ: access and refresh tokens
// at-<tag>/rt-<tag>, authorization code code-<tag>, PKCE request
// pkce-<tag> and OpenID Connect session oidc-<tag>.
func mustGrant(t *testing.T, ctx context.Context, s storage.Store, c *storage.Client, userID, tag string) {
	t.Helper()
	mustCreateTokens(t, ctx, s, userRequest(c, "req-"+tag, userID, time.Time{}), tag)
	code := userRequest(c, "req-code-"+tag, userID, time.Time{})
	if err := s.CreateAuthorizeCodeSession(ctx, "code-"+tag, code); err != nil {
		t.Fatalf("CreateAuthorizeCodeSession: %v", err)
	}
	if err := s.CreatePKCERequestSession(ctx, "pkce-"+tag, code); err != nil {
		t.Fatalf("CreatePKCERequestSession: %v", err)
	}
	if err := s.CreateOpenIDConnectSession(ctx, "oidc-"+tag, code); err != nil {
		t.Fatalf("CreateOpenIDConnectSession: %v", err)
	}
}

// checkGrants fails unless every grant mustGrant stored under tag reads
// with want: nil while they stay, fosite.ErrNotFound once deleted.
func checkGrants(t *testing.T, ctx context.Context, s storage.Store, tag string, want error) {
	t.Helper()
	checkTokens(t, ctx, s, map[string]error{"at-" + tag: want, "rt-" + tag: want})
	if _, err := s.GetAuthorizeCodeSession(ctx, "code-"+tag, openid.NewDefaultSession()); !errors.Is(err, want) {
		t.Errorf("GetAuthorizeCodeSession(code-%s): %v, want %v", tag, err, want)
	}
	if _, err := s.GetPKCERequestSession(ctx, "pkce-"+tag, openid.NewDefaultSession()); !errors.Is(err, want) {
		t.Errorf("GetPKCERequestSession(pkce-%s): %v, want %v", tag, err, want)
	}
	probe := &fosite.Request{Session: openid.NewDefaultSession()}
	if _, err := s.GetOpenIDConnectSession(ctx, "oidc-"+tag, probe); !errors.Is(err, want) {
		t.Errorf("GetOpenIDConnectSession(oidc-%s): %v, want %v", tag, err, want)
	}
}

// loginState is a user's scan-to-login records: a browser session and a
// ticket the user scanned.
func (f loginFixture) mustLoginState(t *testing.T, ctx context.Context, s storage.Store, userID, tag string) {
	t.Helper()
	bs := storage.BrowserSession{ID: "s-" + tag, UserID: userID, AuthTime: f.t0, AMR: []string{"wechat"},
		CreatedAt: f.t0, ExpiresAt: f.t0.Add(time.Hour)}
	if err := s.CreateBrowserSession(ctx, &bs); err != nil {
		t.Fatalf("CreateBrowserSession: %v", err)
	}
	f.mustCreate(t, ctx, s, "t-"+tag)
	f.mustScan(t, ctx, s, "t-"+tag, userID)
}

// checkLoginState fails unless the records mustLoginState stored under tag
// are there (want nil) or gone (want storage.ErrNotFound).
func (f loginFixture) checkLoginState(t *testing.T, ctx context.Context, s storage.Store, tag string, want error) {
	t.Helper()
	if _, err := s.GetBrowserSession(ctx, "s-"+tag, f.t0); !errors.Is(err, want) {
		t.Errorf("GetBrowserSession(s-%s): %v, want %v", tag, err, want)
	}
	if _, err := s.GetLoginTicket(ctx, "t-"+tag); !errors.Is(err, want) {
		t.Errorf("GetLoginTicket(t-%s): %v, want %v", tag, err, want)
	}
}

func mustSetDisabled(t *testing.T, ctx context.Context, s storage.Store, id string, disabled bool) *storage.User {
	t.Helper()
	u, err := s.SetUserDisabled(ctx, id, disabled)
	if err != nil {
		t.Fatalf("SetUserDisabled(%s, %t): %v", id, disabled, err)
	}
	if u == nil || u.ID != id || u.Disabled() != disabled {
		t.Fatalf("SetUserDisabled(%s, %t) = %+v, want the user, Disabled() %t", id, disabled, u, disabled)
	}
	return u
}

func ptr(s string) *string { return &s }

func testPeople(t *testing.T, su suite) {
	su.run(t, "ListFilters", func(t *testing.T, ctx context.Context, s storage.Store) {
		mini := mustCreateClient(t, ctx, s, "mini") // appid wxmini
		web := newClient("web")
		web.WeChatAppID = "" // a website: no mini-program
		if err := s.CreateClient(ctx, web); err != nil {
			t.Fatalf("CreateClient(web): %v", err)
		}
		const phone1, phone3 = "+8613800000001", "+8613800000003"
		// Apart in time, so the created_at bounds split them; the wanted
		// lists are built from what the store stamped all the same.
		for _, l := range []login{
			{"wxmini", "o-1", "union-1", "user-1"},
			{appA, "o-1", "", "user-2"}, // the same openid by chance in another app
			{appB, "o-3", "union-3", "user-3"},
			{appA, "o-4", "", "user-4"},
			{appC, "o-5", "", "user-5"},
		} {
			mustLink(t, ctx, s, l)
			time.Sleep(2 * time.Millisecond)
		}
		// user-1 is in app B too, through the unionid.
		checkLinksTo(t, ctx, s, login{appB, "o-1b", "union-1", "user-x"}, "user-1")
		for id, phone := range map[string]string{"user-1": phone1, "user-3": phone3} {
			if err := s.SetUserPhone(ctx, id, phone); err != nil {
				t.Fatalf("SetUserPhone: %v", err)
			}
		}
		// user-4 signed in on the website, user-5 got a token from the
		// mini-program's client without an identity in its app, and so did
		// user-1, who has one.
		mustCreateTokens(t, ctx, s, userRequest(web, "req-web", "user-4", time.Time{}), "web")
		if err := s.CreateAccessTokenSession(ctx, "at-mini5", userRequest(mini, "req-mini5", "user-5", time.Time{})); err != nil {
			t.Fatalf("CreateAccessTokenSession: %v", err)
		}
		if err := s.CreateRefreshTokenSession(ctx, "rt-mini1", "", userRequest(mini, "req-mini1", "user-1", time.Time{})); err != nil {
			t.Fatalf("CreateRefreshTokenSession: %v", err)
		}
		// A client_credentials token names no user.
		mustCreateTokens(t, ctx, s, newRequest(web, "req-cc"), "cc")

		all := usersNewestFirst(t, ctx, s, "user-1", "user-2", "user-3", "user-4", "user-5")
		checkList(t, ctx, s, "no filter", storage.UserFilter{}, all)
		got, err := s.ListUsers(ctx, storage.UserFilter{}, nil, 100)
		if err != nil {
			t.Fatalf("ListUsers: %v", err)
		}
		for i := range got {
			checkStoredUser(t, ctx, s, "listed user", &got[i])
		}
		for _, tc := range []struct {
			name string
			f    storage.UserFilter
			want []string
		}{
			{"openid in any app", storage.UserFilter{OpenID: "o-1"}, only(all, "user-1", "user-2")},
			{"openid in app A", storage.UserFilter{OpenID: "o-1", AppID: appA}, only(all, "user-2")},
			{"openid in wxmini", storage.UserFilter{OpenID: "o-1", AppID: "wxmini"}, only(all, "user-1")},
			{"openid joined through the unionid", storage.UserFilter{OpenID: "o-1b"}, only(all, "user-1")},
			{"openid not in the app", storage.UserFilter{OpenID: "o-1", AppID: appC}, nil},
			{"unknown openid", storage.UserFilter{OpenID: "o-nope"}, nil},
			{"unionid of two identities", storage.UserFilter{UnionID: "union-1"}, only(all, "user-1")},
			{"unionid", storage.UserFilter{UnionID: "union-3"}, only(all, "user-3")},
			{"unknown unionid", storage.UserFilter{UnionID: "union-nope"}, nil},
			{"phone", storage.UserFilter{Phone: phone1}, only(all, "user-1")},
			{"phone prefix", storage.UserFilter{Phone: "+86138"}, nil},
			{"client with appid", storage.UserFilter{ClientID: "mini"}, only(all, "user-1", "user-5")},
			{"client without appid", storage.UserFilter{ClientID: "web"}, only(all, "user-4")},
			{"unknown client", storage.UserFilter{ClientID: "nope"}, nil},
			{"client and phone", storage.UserFilter{ClientID: "mini", Phone: phone1}, only(all, "user-1")},
			{"openid and another's phone", storage.UserFilter{OpenID: "o-1", Phone: phone3}, nil},
		} {
			checkList(t, ctx, s, tc.name, tc.f, tc.want)
		}

		created := map[string]time.Time{}
		for _, id := range all {
			u, err := s.GetUser(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			created[id] = u.CreatedAt
		}
		mid := created["user-3"]
		var from, before []string
		for _, id := range all {
			if created[id].Before(mid) {
				before = append(before, id)
			} else {
				from = append(from, id)
			}
		}
		if len(before) == 0 || len(from) < 2 {
			t.Fatalf("created_at %v split the users into %q and %q: want some on each side", mid, before, from)
		}
		checkList(t, ctx, s, "created after (inclusive)", storage.UserFilter{CreatedAfter: mid}, from)
		checkList(t, ctx, s, "created before (exclusive)", storage.UserFilter{CreatedBefore: mid}, before)
		checkList(t, ctx, s, "created in an empty range", storage.UserFilter{CreatedAfter: mid, CreatedBefore: mid}, nil)
		checkList(t, ctx, s, "created in a range",
			storage.UserFilter{CreatedAfter: mid, CreatedBefore: mid.Add(time.Microsecond)},
			only(all, slices.DeleteFunc(slices.Clone(from), func(id string) bool { return !created[id].Equal(mid) })...))
		checkList(t, ctx, s, "created after and phone", storage.UserFilter{CreatedAfter: mid, Phone: phone3}, only(all, "user-3"))
	})

	su.run(t, "ListPaging", func(t *testing.T, ctx context.Context, s storage.Store) {
		ids := []string{"user-1", "user-2", "user-3", "user-4", "user-5"}
		for i, id := range ids {
			mustLink(t, ctx, s, login{appA, "o-" + id, "", id})
			if i%2 == 0 {
				if err := s.SetUserPhone(ctx, id, "+8613800000000"); err != nil {
					t.Fatal(err)
				}
			}
		}
		all := usersNewestFirst(t, ctx, s, ids...)
		for _, limit := range []int{1, 2, 5, 10} {
			if got := listAllUsers(t, ctx, s, storage.UserFilter{}, limit); !slices.Equal(got, all) {
				t.Errorf("pages of %d = %q, want each user once, newest first: %q", limit, got, all)
			}
		}
		phoned := only(all, "user-1", "user-3", "user-5")
		if got := listAllUsers(t, ctx, s, storage.UserFilter{Phone: "+8613800000000"}, 1); !slices.Equal(got, phoned) {
			t.Errorf("filtered pages of 1 = %q, want %q", got, phoned)
		}
		// A cursor is a position, not a user: it holds after its user is
		// erased.
		third, err := s.GetUser(ctx, all[2])
		if err != nil {
			t.Fatal(err)
		}
		if err := s.EraseUser(ctx, third.ID); err != nil {
			t.Fatalf("EraseUser: %v", err)
		}
		page, err := s.ListUsers(ctx, storage.UserFilter{}, &storage.UserCursor{CreatedAt: third.CreatedAt, ID: third.ID}, 10)
		if err != nil {
			t.Fatalf("ListUsers after an erased user's cursor: %v", err)
		}
		if got := userIDs(page); !slices.Equal(got, all[3:]) {
			t.Errorf("page after an erased user's cursor = %q, want %q", got, all[3:])
		}
	})

	su.run(t, "Details", func(t *testing.T, ctx context.Context, s storage.Store) {
		mini := mustCreateClient(t, ctx, s, "mini")
		web := mustCreateClient(t, ctx, s, "web")
		u, _ := mustLink(t, ctx, s, login{"wxmini", "o-m", "union-1", "user-1"})
		checkLinksTo(t, ctx, s, login{appA, "o-a", "union-1", "user-x"}, "user-1")
		mustLink(t, ctx, s, login{appA, "o-other", "", "user-2"})

		d, err := s.UserDetails(ctx, "user-1")
		if err != nil {
			t.Fatalf("UserDetails: %v", err)
		}
		checkStoredUser(t, ctx, s, "UserDetails", &d.User)
		if d.User.ID != u.ID {
			t.Errorf("UserDetails user = %q, want %q", d.User.ID, u.ID)
		}
		if len(d.Identities) != 2 {
			t.Fatalf("UserDetails identities = %+v, want app A's and wxmini's", d.Identities)
		}
		var lastLogin time.Time
		for i, want := range [][2]string{{appA, "o-a"}, {"wxmini", "o-m"}} { // by appid, then openid
			stored, err := s.GetWeChatIdentity(ctx, want[0], want[1])
			if err != nil {
				t.Fatal(err)
			}
			got := d.Identities[i]
			if got.AppID != stored.AppID || got.OpenID != stored.OpenID || got.UnionID != "union-1" || got.UserID != "user-1" ||
				!got.CreatedAt.Equal(stored.CreatedAt) || !got.UpdatedAt.Equal(stored.UpdatedAt) {
				t.Errorf("identity #%d = %+v, want %+v (without session key)", i, got, stored)
			}
			if len(got.SessionKey) != 0 {
				t.Errorf("identity #%d has session key %q, want none", i, got.SessionKey)
			}
			if stored.UpdatedAt.After(lastLogin) {
				lastLogin = stored.UpdatedAt
			}
		}
		if !d.LastLoginAt.Equal(lastLogin) {
			t.Errorf("LastLoginAt = %v, want the latest identity login %v", d.LastLoginAt, lastLogin)
		}
		if len(d.Chains) != 0 {
			t.Errorf("Chains = %+v before any token, want none", d.Chains)
		}

		// A browser login later than every WeChat login.
		authTime := usec(time.Now().Add(time.Hour))
		bs := storage.BrowserSession{ID: "s-1", UserID: "user-1", AuthTime: authTime, AMR: []string{"wechat"},
			CreatedAt: usec(time.Now()), ExpiresAt: authTime.Add(time.Hour)}
		if err := s.CreateBrowserSession(ctx, &bs); err != nil {
			t.Fatalf("CreateBrowserSession: %v", err)
		}

		t0 := time.Now().UTC().Truncate(time.Second)
		// Live: one token, issued half an hour ago.
		mustCreateTokens(t, ctx, s, userRequest(web, "req-live", "user-1", t0.Add(-30*time.Minute)), "live")
		// Live: rotated once; the chain was issued when its current token was.
		mustCreateTokens(t, ctx, s, userRequest(mini, "req-rot", "user-1", t0.Add(-2*time.Hour)), "rot1")
		if err := s.RotateRefreshToken(ctx, "req-rot", "rt-rot1"); err != nil {
			t.Fatalf("RotateRefreshToken: %v", err)
		}
		mustCreateTokens(t, ctx, s, userRequest(mini, "req-rot", "user-1", t0.Add(-time.Hour)), "rot2")
		// Not live: rotated with nothing after it, revoked, expired, or
		// another user's.
		mustCreateTokens(t, ctx, s, userRequest(web, "req-used", "user-1", t0), "used")
		if err := s.RotateRefreshToken(ctx, "req-used", "rt-used"); err != nil {
			t.Fatalf("RotateRefreshToken: %v", err)
		}
		mustCreateTokens(t, ctx, s, userRequest(web, "req-revoked", "user-1", t0), "revoked")
		if err := s.RevokeRefreshToken(ctx, "req-revoked"); err != nil {
			t.Fatalf("RevokeRefreshToken: %v", err)
		}
		expired := userRequest(web, "req-expired", "user-1", t0)
		expired.Session.(*openid.DefaultSession).SetExpiresAt(fosite.RefreshToken, t0.Add(-time.Minute))
		mustCreateTokens(t, ctx, s, expired, "expired")
		mustCreateTokens(t, ctx, s, userRequest(web, "req-other", "user-2", t0), "other")

		d, err = s.UserDetails(ctx, "user-1")
		if err != nil {
			t.Fatalf("UserDetails: %v", err)
		}
		if !d.LastLoginAt.Equal(authTime) {
			t.Errorf("LastLoginAt = %v, want the browser login's auth time %v", d.LastLoginAt, authTime)
		}
		want := []storage.TokenChain{
			{RequestID: "req-live", ClientID: "web", Scopes: []string{"openid", "offline"}, IssuedAt: t0.Add(-30 * time.Minute), ExpiresAt: rtExpiry},
			{RequestID: "req-rot", ClientID: "mini", Scopes: []string{"openid", "offline"}, IssuedAt: t0.Add(-time.Hour), ExpiresAt: rtExpiry},
		}
		if len(d.Chains) != len(want) {
			t.Fatalf("Chains = %+v, want %+v", d.Chains, want)
		}
		for i, w := range want {
			g := d.Chains[i]
			if g.RequestID != w.RequestID || g.ClientID != w.ClientID || !sameStrings(g.Scopes, w.Scopes) ||
				!g.IssuedAt.Equal(w.IssuedAt) || !g.ExpiresAt.Equal(w.ExpiresAt) {
				t.Errorf("chain #%d = %+v, want %+v", i, g, w)
			}
		}
		// What the caller gets is its own.
		d.Chains[0].Scopes[0] = "admin"
		d.Identities[0].UnionID = "changed"
		again, err := s.UserDetails(ctx, "user-1")
		if err != nil {
			t.Fatal(err)
		}
		if again.Chains[0].Scopes[0] != "openid" || again.Identities[0].UnionID != "union-1" {
			t.Errorf("a change to UserDetails' result reached the store: %+v", again)
		}
	})

	su.run(t, "Profile", func(t *testing.T, ctx context.Context, s storage.Store) {
		created, _ := mustLink(t, ctx, s, login{appA, "o-a", "", "user-1"})
		if created.Nickname != "" || created.Picture != "" || !created.ProfileUpdatedAt.IsZero() || created.Disabled() {
			t.Errorf("new user = %+v, want no profile, enabled", created)
		}
		const pic = "https://cdn.example.com/a.png"
		start := time.Now()
		u, err := s.SetUserProfile(ctx, "user-1", storage.ProfilePatch{Nickname: ptr("阿明"), Picture: ptr(pic)})
		if err != nil {
			t.Fatalf("SetUserProfile: %v", err)
		}
		if u.ID != "user-1" || u.Nickname != "阿明" || u.Picture != pic || !u.CreatedAt.Equal(created.CreatedAt) {
			t.Errorf("SetUserProfile = %+v, want nickname and picture set", u)
		}
		checkRecent(t, "ProfileUpdatedAt", u.ProfileUpdatedAt, start, time.Now())
		checkRecent(t, "UpdatedAt", u.UpdatedAt, start, time.Now())
		checkStoredUser(t, ctx, s, "profile set", u)

		// nil keeps, "" clears.
		prev := u
		u, err = s.SetUserProfile(ctx, "user-1", storage.ProfilePatch{Picture: ptr("")})
		if err != nil {
			t.Fatalf("SetUserProfile: %v", err)
		}
		if u.Nickname != "阿明" || u.Picture != "" || u.ProfileUpdatedAt.Before(prev.ProfileUpdatedAt) {
			t.Errorf("after clearing the picture = %+v, want the nickname kept, ProfileUpdatedAt not before %v", u, prev.ProfileUpdatedAt)
		}
		checkStoredUser(t, ctx, s, "picture cleared", u)
		prev = u
		u, err = s.SetUserProfile(ctx, "user-1", storage.ProfilePatch{})
		if err != nil {
			t.Fatalf("SetUserProfile: %v", err)
		}
		if u.Nickname != "阿明" || u.Picture != "" || u.ProfileUpdatedAt.Before(prev.ProfileUpdatedAt) {
			t.Errorf("after an empty patch = %+v, want everything kept", u)
		}
		checkStoredUser(t, ctx, s, "empty patch", u)
		u, err = s.SetUserProfile(ctx, "user-1", storage.ProfilePatch{Nickname: ptr(""), Picture: ptr(pic)})
		if err != nil {
			t.Fatalf("SetUserProfile: %v", err)
		}
		if u.Nickname != "" || u.Picture != pic {
			t.Errorf("after clearing the nickname = %+v", u)
		}
		// The next login hands the profile back.
		next, _ := mustLink(t, ctx, s, login{appA, "o-a", "", "user-2"})
		checkUser(t, "user returned by the next login", next, u)
	})

	su.run(t, "Rollback", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		mustGrant(t, ctx, s, f.client, f.alice, "alice")
		f.mustLoginState(t, ctx, s, f.alice, "alice")
		before, err := s.GetUser(ctx, f.alice)
		if err != nil {
			t.Fatal(err)
		}
		for name, write := range map[string]func(ctx context.Context) error{
			"SetUserDisabled": func(ctx context.Context) error { _, err := s.SetUserDisabled(ctx, f.alice, true); return err },
			"EraseUser":       func(ctx context.Context) error { return s.EraseUser(ctx, f.alice) },
			"SetUserProfile": func(ctx context.Context) error {
				_, err := s.SetUserProfile(ctx, f.alice, storage.ProfilePatch{Nickname: ptr("x")})
				return err
			},
		} {
			txCtx := mustBegin(t, ctx, s)
			if err := write(txCtx); err != nil {
				t.Fatalf("%s in a transaction: %v", name, err)
			}
			if err := s.Rollback(txCtx); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			checkStoredUser(t, ctx, s, name+" rolled back", before)
			checkGrants(t, ctx, s, "alice", nil)
			f.checkLoginState(t, ctx, s, "alice", nil)
			checkIdentity(t, ctx, s, appA, "o-alice", "", f.alice, login{appA, "o-alice", "", "user-alice"}.identity().SessionKey)
		}
	})

	su.run(t, "NotFound", func(t *testing.T, ctx context.Context, s storage.Store) {
		checkList(t, ctx, s, "empty store", storage.UserFilter{}, nil)
		mustLink(t, ctx, s, login{appA, "o-a", "", "user-1"})
		if d, err := s.UserDetails(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("UserDetails = %+v, %v; want ErrNotFound", d, err)
		}
		for _, disabled := range []bool{true, false} {
			if u, err := s.SetUserDisabled(ctx, "nobody", disabled); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("SetUserDisabled(%t) = %+v, %v; want ErrNotFound", disabled, u, err)
			}
		}
		if u, err := s.SetUserProfile(ctx, "nobody", storage.ProfilePatch{Nickname: ptr("x")}); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("SetUserProfile = %+v, %v; want ErrNotFound", u, err)
		}
		if err := s.EraseUser(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("EraseUser: %v, want ErrNotFound", err)
		}
		checkNoUser(t, ctx, s, "nobody")
	})
}
