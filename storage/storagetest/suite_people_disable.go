package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// testPeopleDisable: disabling deletes what a user could still use and
// refuses their logins, refreshes and code exchanges; erasure removes
// everything that names them.
func testPeopleDisable(t *testing.T, su suite) {
	su.run(t, "DisableDeletesGrants", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		for _, u := range []struct{ id, tag string }{{f.alice, "alice"}, {f.bob, "bob"}} {
			mustGrant(t, ctx, s, f.client, u.id, u.tag)
			f.mustLoginState(t, ctx, s, u.id, u.tag)
		}
		waiting := f.mustCreate(t, ctx, s, "t-waiting") // no user yet
		before, err := s.GetUser(ctx, f.alice)
		if err != nil {
			t.Fatal(err)
		}

		start := time.Now()
		u := mustSetDisabled(t, ctx, s, f.alice, true)
		checkRecent(t, "DisabledAt", u.DisabledAt, start, time.Now())
		checkRecent(t, "UpdatedAt", u.UpdatedAt, start, time.Now())
		if !u.CreatedAt.Equal(before.CreatedAt) || u.PhoneNumber != before.PhoneNumber {
			t.Errorf("disabled user = %+v, want as before but disabled: %+v", u, before)
		}
		checkStoredUser(t, ctx, s, "disabled", u)
		checkGrants(t, ctx, s, "alice", fosite.ErrNotFound)
		f.checkLoginState(t, ctx, s, "alice", storage.ErrNotFound)
		checkGrants(t, ctx, s, "bob", nil)
		f.checkLoginState(t, ctx, s, "bob", nil)
		checkStored(t, ctx, s, "another browser's waiting ticket", waiting)
		if d, err := s.UserDetails(ctx, f.alice); err != nil || len(d.Chains) != 0 || !d.Disabled() {
			t.Errorf("UserDetails of the disabled user = %+v, %v; want disabled, no chains", d, err)
		}

		// Again: still disabled since the first time.
		again := mustSetDisabled(t, ctx, s, f.alice, true)
		if !again.DisabledAt.Equal(u.DisabledAt) {
			t.Errorf("DisabledAt after disabling again = %v, want the first %v", again.DisabledAt, u.DisabledAt)
		}

		// Enabling restores nothing.
		start = time.Now()
		enabled := mustSetDisabled(t, ctx, s, f.alice, false)
		if !enabled.DisabledAt.IsZero() {
			t.Errorf("DisabledAt after enabling = %v, want zero", enabled.DisabledAt)
		}
		checkRecent(t, "UpdatedAt", enabled.UpdatedAt, start, time.Now())
		checkStoredUser(t, ctx, s, "enabled", enabled)
		checkGrants(t, ctx, s, "alice", fosite.ErrNotFound)
		f.checkLoginState(t, ctx, s, "alice", storage.ErrNotFound)
		mustSetDisabled(t, ctx, s, f.alice, false) // enabling an enabled user is fine
	})

	su.run(t, "DisabledRefusesRefresh", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		mustLink(t, ctx, s, login{appA, "o-a", "", "user-1"})
		mustLink(t, ctx, s, login{appA, "o-b", "", "user-2"})
		mustSetDisabled(t, ctx, s, "user-1", true)
		// Disabling deleted the user's tokens; one stored after it (as a
		// token request racing it would) must not rotate.
		mustCreateTokens(t, ctx, s, userRequest(c, "req-1", "user-1", time.Time{}), "1")
		mustCreateTokens(t, ctx, s, userRequest(c, "req-2", "user-2", time.Time{}), "2")
		if err := s.RotateRefreshToken(ctx, "req-1", "rt-1"); !errors.Is(err, storage.ErrUserDisabled) {
			t.Errorf("RotateRefreshToken of a disabled user's token: %v, want ErrUserDisabled", err)
		}
		txCtx := mustBegin(t, ctx, s)
		if err := s.RotateRefreshToken(txCtx, "req-1", "rt-1"); !errors.Is(err, storage.ErrUserDisabled) {
			t.Errorf("RotateRefreshToken in a transaction: %v, want ErrUserDisabled", err)
		}
		if err := s.Rollback(txCtx); err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		// Nothing changed: the token is active and its access token stays.
		checkTokens(t, ctx, s, map[string]error{"rt-1": nil, "at-1": nil})
		// Other users' tokens rotate.
		if err := s.RotateRefreshToken(ctx, "req-2", "rt-2"); err != nil {
			t.Errorf("RotateRefreshToken of an enabled user's token: %v", err)
		}
		mustSetDisabled(t, ctx, s, "user-1", false)
		if err := s.RotateRefreshToken(ctx, "req-1", "rt-1"); err != nil {
			t.Errorf("RotateRefreshToken after enabling: %v", err)
		}
		checkTokens(t, ctx, s, map[string]error{"rt-1": fosite.ErrInactiveToken, "at-1": fosite.ErrNotFound})
	})

	su.run(t, "DisabledRefusesCode", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := mustCreateClient(t, ctx, s, "client")
		for _, u := range []string{"user-1", "user-2"} {
			mustLink(t, ctx, s, login{appA, "o-" + u, "", u})
		}
		mustSetDisabled(t, ctx, s, "user-1", true)
		// Codes stored after the disable, as an authorization racing it
		// would.
		for i, u := range []string{"user-1", "user-2"} {
			sig := fmt.Sprintf("code-%d", i+1)
			if err := s.CreateAuthorizeCodeSession(ctx, sig, userRequest(c, "req-"+sig, u, time.Time{})); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.InvalidateAuthorizeCodeSession(ctx, "code-1"); !errors.Is(err, storage.ErrUserDisabled) {
			t.Errorf("InvalidateAuthorizeCodeSession of a disabled user's code: %v, want ErrUserDisabled", err)
		}
		if err := s.InvalidateAuthorizeCodeSession(ctx, "code-2"); err != nil {
			t.Errorf("InvalidateAuthorizeCodeSession of an enabled user's code: %v", err)
		}
		// The refused code stays unused: enabling the user lets it through.
		mustSetDisabled(t, ctx, s, "user-1", false)
		if err := s.InvalidateAuthorizeCodeSession(ctx, "code-1"); err != nil {
			t.Errorf("the code after enabling: %v", err)
		}
	})

	su.run(t, "DisabledRefusesLogin", func(t *testing.T, ctx context.Context, s storage.Store) {
		first := login{appA, "o-a", "union-1", "user-1"}
		mustLink(t, ctx, s, first)
		mustSetDisabled(t, ctx, s, "user-1", true)

		again := login{appA, "o-a", "union-1", "user-x"} // a new session key
		if u, err := s.LinkWeChatIdentity(ctx, again.identity(), again.newUserID); !errors.Is(err, storage.ErrUserDisabled) {
			t.Errorf("LinkWeChatIdentity of a disabled user's identity = %+v, %v; want ErrUserDisabled", u, err)
		}
		txCtx := mustBegin(t, ctx, s)
		if _, err := s.LinkWeChatIdentity(txCtx, again.identity(), again.newUserID); !errors.Is(err, storage.ErrUserDisabled) {
			t.Errorf("LinkWeChatIdentity in a transaction: %v, want ErrUserDisabled", err)
		}
		if err := s.Rollback(txCtx); err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		checkIdentity(t, ctx, s, appA, "o-a", "union-1", "user-1", first.identity().SessionKey)
		checkNoUser(t, ctx, s, "user-x")

		// The person's first login in another app would join them.
		joining := login{appB, "o-b", "union-1", "user-2"}
		if u, err := s.LinkWeChatIdentity(ctx, joining.identity(), joining.newUserID); !errors.Is(err, storage.ErrUserDisabled) {
			t.Errorf("LinkWeChatIdentity joining a disabled user = %+v, %v; want ErrUserDisabled", u, err)
		}
		if id, err := s.GetWeChatIdentity(ctx, appB, "o-b"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("identity refused for a disabled user = %+v, %v; want ErrNotFound", id, err)
		}
		checkNoUser(t, ctx, s, "user-2")
		// Someone else logs in as usual.
		checkLinksTo(t, ctx, s, login{appB, "o-c", "union-2", "user-3"}, "user-3")

		mustSetDisabled(t, ctx, s, "user-1", false)
		checkLinksTo(t, ctx, s, again, "user-1")
		checkIdentity(t, ctx, s, appA, "o-a", "union-1", "user-1", again.identity().SessionKey)
		checkLinksTo(t, ctx, s, joining, "user-1")
		checkNoUser(t, ctx, s, "user-2")
	})

	su.run(t, "Erase", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		// alice gains a unionid and joins it in app B.
		checkLinksTo(t, ctx, s, login{appA, "o-alice", "union-alice", "user-x"}, f.alice)
		checkLinksTo(t, ctx, s, login{appB, "o-alice-b", "union-alice", "user-y"}, f.alice)
		if err := s.SetUserPhone(ctx, f.alice, "+8613800000001"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetUserProfile(ctx, f.alice, storage.ProfilePatch{Nickname: ptr("Alice")}); err != nil {
			t.Fatal(err)
		}
		for _, u := range []struct{ id, tag string }{{f.alice, "alice"}, {f.bob, "bob"}} {
			mustGrant(t, ctx, s, f.client, u.id, u.tag)
			f.mustLoginState(t, ctx, s, u.id, u.tag)
		}

		if err := s.EraseUser(ctx, f.alice); err != nil {
			t.Fatalf("EraseUser: %v", err)
		}
		checkNoUser(t, ctx, s, f.alice)
		for _, id := range [][2]string{{appA, "o-alice"}, {appB, "o-alice-b"}} {
			if got, err := s.GetWeChatIdentity(ctx, id[0], id[1]); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("GetWeChatIdentity(%s, %s) of an erased user = %+v, %v; want ErrNotFound", id[0], id[1], got, err)
			}
		}
		if _, err := s.UserWeChatIdentity(ctx, f.alice, appA); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("UserWeChatIdentity of an erased user: %v, want ErrNotFound", err)
		}
		if _, err := s.UserDetails(ctx, f.alice); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("UserDetails of an erased user: %v, want ErrNotFound", err)
		}
		checkGrants(t, ctx, s, "alice", fosite.ErrNotFound)
		f.checkLoginState(t, ctx, s, "alice", storage.ErrNotFound)
		checkGrants(t, ctx, s, "bob", nil)
		f.checkLoginState(t, ctx, s, "bob", nil)
		checkList(t, ctx, s, "by the erased unionid", storage.UserFilter{UnionID: "union-alice"}, nil)
		checkList(t, ctx, s, "by the erased phone", storage.UserFilter{Phone: "+8613800000001"}, nil)
		checkList(t, ctx, s, "everyone", storage.UserFilter{}, []string{f.bob})

		// The same person's next login is a new user, whom the unionid
		// joins from then on.
		checkLinksTo(t, ctx, s, login{appA, "o-alice", "union-alice", "user-new"}, "user-new")
		checkLinksTo(t, ctx, s, login{appB, "o-alice-b", "union-alice", "user-z"}, "user-new")
		u, err := s.GetUser(ctx, "user-new")
		if err != nil {
			t.Fatal(err)
		}
		if u.PhoneNumber != "" || u.Nickname != "" {
			t.Errorf("the new user = %+v, want nothing of the erased one", u)
		}
		if err := s.EraseUser(ctx, f.alice); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("EraseUser again: %v, want ErrNotFound", err)
		}
	})

	// Disabling and erasing inside a transaction are undone by Rollback,
	// tokens and all.
}

// testPeopleRaces covers disabling and erasing a user while their tokens
// are being issued. The provider refreshes and logs in inside a
// transaction, storing the new tokens after RotateRefreshToken or
// LinkWeChatIdentity returned; whichever order the calls land in, no token
// of the user may survive. Each case races several rounds, a user each, so
// more interleavings are tried.
func testPeopleRaces(t *testing.T, su suite) {
	const (
		n      = 8
		rounds = 5
	)
	for _, op := range []peopleOp{
		{"Disable", func(ctx context.Context, s storage.Store, id string) error {
			return retrySerialization(func() error {
				_, err := s.SetUserDisabled(ctx, id, true)
				return err
			})
		}},
		{"Erase", func(ctx context.Context, s storage.Store, id string) error {
			return retrySerialization(func() error { return s.EraseUser(ctx, id) })
		}},
	} {
		su.run(t, "RefreshWhile"+op.name, func(t *testing.T, ctx context.Context, s storage.Store) {
			c := mustCreateClient(t, ctx, s, "client")
			for round := range rounds {
				user := fmt.Sprintf("user-%d", round)
				mustLink(t, ctx, s, login{appA, "o-" + user, "", user})
				tag := func(i int) string { return fmt.Sprintf("%d-%d", round, i) }
				for i := range n {
					mustCreateTokens(t, ctx, s, userRequest(c, "req-"+tag(i), user, time.Time{}), tag(i))
				}
				errs := op.race(t, ctx, s, user, round, n, func(ctx context.Context, i int) error {
					if err := s.RotateRefreshToken(ctx, "req-"+tag(i), "rt-"+tag(i)); err != nil {
						return err
					}
					r := userRequest(c, "req-"+tag(i), user, time.Time{})
					r.RequestedAt = time.Now().UTC()
					if err := s.CreateAccessTokenSession(ctx, "at-"+tag(i)+"-new", r); err != nil {
						return err
					}
					return s.CreateRefreshTokenSession(ctx, "rt-"+tag(i)+"-new", "at-"+tag(i)+"-new", r)
				})
				gone := map[string]error{}
				for i, err := range errs {
					checkRaceErr(t, round, "refresh", i, err, storage.ErrUserDisabled, fosite.ErrNotFound, fosite.ErrSerializationFailure)
					for _, sig := range []string{"at-", "rt-"} {
						gone[sig+tag(i)] = fosite.ErrNotFound
						gone[sig+tag(i)+"-new"] = fosite.ErrNotFound
					}
				}
				checkTokens(t, ctx, s, gone)
				if d, err := s.UserDetails(ctx, user); err == nil && len(d.Chains) != 0 {
					t.Errorf("round %d: live chains after %s: %+v, want none", round, op.name, d.Chains)
				}
			}
		})

		su.run(t, "CodeWhile"+op.name, func(t *testing.T, ctx context.Context, s storage.Store) {
			c := mustCreateClient(t, ctx, s, "client")
			for round := range rounds {
				user := fmt.Sprintf("user-%d", round)
				mustLink(t, ctx, s, login{appA, "o-" + user, "", user})
				tag := func(i int) string { return fmt.Sprintf("%d-%d", round, i) }
				for i := range n {
					if err := s.CreateAuthorizeCodeSession(ctx, "code-"+tag(i), userRequest(c, "req-"+tag(i), user, time.Time{})); err != nil {
						t.Fatal(err)
					}
				}
				// Each exchange as fosite's code handler runs it: invalidate
				// the code, store the tokens, in one transaction.
				errs := op.race(t, ctx, s, user, round, n, func(ctx context.Context, i int) error {
					if err := s.InvalidateAuthorizeCodeSession(ctx, "code-"+tag(i)); err != nil {
						return err
					}
					r := userRequest(c, "req-"+tag(i), user, time.Time{})
					if err := s.CreateAccessTokenSession(ctx, "at-"+tag(i), r); err != nil {
						return err
					}
					return s.CreateRefreshTokenSession(ctx, "rt-"+tag(i), "at-"+tag(i), r)
				})
				gone := map[string]error{}
				for i, err := range errs {
					// An erasure deleting the code while the exchange waits on
					// its row makes the code read as used: an invalid_grant
					// too, and there is nothing to revoke.
					checkRaceErr(t, round, "exchange", i, err, storage.ErrUserDisabled, fosite.ErrNotFound,
						fosite.ErrSerializationFailure, fosite.ErrInvalidatedAuthorizeCode)
					gone["at-"+tag(i)] = fosite.ErrNotFound
					gone["rt-"+tag(i)] = fosite.ErrNotFound
				}
				checkTokens(t, ctx, s, gone)
			}
		})

		su.run(t, "LoginWhile"+op.name, func(t *testing.T, ctx context.Context, s storage.Store) {
			c := mustCreateClient(t, ctx, s, "client")
			for round := range rounds {
				user, union := fmt.Sprintf("user-%d", round), fmt.Sprintf("union-%d", round)
				mustLink(t, ctx, s, login{appA, "o-" + user, union, user})
				tag := func(i int) string { return fmt.Sprintf("%d-%d", round, i) }
				logins := make([]login, n)
				for i := range logins {
					// The known identity, and new identities joining through
					// the unionid, alternately.
					logins[i] = login{appA, "o-" + user, union, "user-x" + tag(i)}
					if i%2 == 1 {
						logins[i] = login{appB, "o-b" + tag(i), union, "user-x" + tag(i)}
					}
				}
				errs := op.race(t, ctx, s, user, round, n, func(ctx context.Context, i int) error {
					u, err := s.LinkWeChatIdentity(ctx, logins[i].identity(), logins[i].newUserID)
					if err != nil {
						return err
					}
					if u.ID != user {
						return fmt.Errorf("login linked to %q: %w", u.ID, errNewPerson)
					}
					r := userRequest(c, "req-"+tag(i), u.ID, time.Time{})
					if err := s.CreateAccessTokenSession(ctx, "at-"+tag(i), r); err != nil {
						return err
					}
					return s.CreateRefreshTokenSession(ctx, "rt-"+tag(i), "at-"+tag(i), r)
				})
				gone := map[string]error{}
				for i, err := range errs {
					// After the erasure the person is someone new, whose
					// tokens the case does not store (they would rightly
					// survive); a login that found the unionid's holder
					// just before the holder was erased may find it gone.
					erasing := op.name == "Erase" && (errors.Is(err, errNewPerson) || errors.Is(err, storage.ErrNotFound))
					if err != nil && !errors.Is(err, storage.ErrUserDisabled) && !errors.Is(err, fosite.ErrSerializationFailure) && !erasing {
						t.Errorf("round %d: login #%d: %v, want nil, ErrUserDisabled or a serialization failure", round, i, err)
					}
					gone["at-"+tag(i)] = fosite.ErrNotFound
					gone["rt-"+tag(i)] = fosite.ErrNotFound
				}
				checkTokens(t, ctx, s, gone)
				if op.name == "Disable" {
					for _, l := range logins {
						checkNoUser(t, ctx, s, l.newUserID)
					}
				}
			}
		})
	}
}

// retrySerialization calls fn again while it fails with a serialization
// failure or deadlock, as the admin API's caller would: the database may
// pick the disabling transaction as a deadlock's victim, and what the races
// check is that no token survives it once it went through.
// peopleOp is what the races run against a user's token issuance.
type peopleOp struct {
	name string
	run  func(ctx context.Context, s storage.Store, id string) error
}

// race runs n issuances for user, each in a transaction as the provider
// runs them, concurrently with op, and returns the issuances' errors; op
// must succeed.
func (op peopleOp) race(t *testing.T, ctx context.Context, s storage.Store, user string, round, n int,
	issue func(ctx context.Context, i int) error) []error {
	t.Helper()
	errs := parallel(n+1, func(i int) error {
		if i == n {
			return op.run(ctx, s, user)
		}
		return inTx(ctx, s, func(ctx context.Context) error { return issue(ctx, i) })
	})
	if errs[n] != nil {
		t.Fatalf("round %d: %s: %v", round, op.name, errs[n])
	}
	return errs[:n]
}

// checkRaceErr fails unless err is nil or one of allowed.
func checkRaceErr(t *testing.T, round int, what string, i int, err error, allowed ...error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, a := range allowed {
		if errors.Is(err, a) {
			return
		}
	}
	t.Errorf("round %d: %s #%d: %v, want nil or one of %v", round, what, i, err, allowed)
}

func retrySerialization(fn func() error) error {
	for range 10 {
		if err := fn(); !errors.Is(err, fosite.ErrSerializationFailure) {
			return err
		}
	}
	return fn()
}

// errNewPerson stops a racing login that linked to a new user, not the
// one being erased.
var errNewPerson = errors.New("linked to a new user")

// inTx runs fn in a transaction of its own, committed when fn succeeds and
// rolled back otherwise, as fosite runs a token request.
func inTx(ctx context.Context, s storage.Store, fn func(ctx context.Context) error) error {
	txCtx, err := s.BeginTX(ctx)
	if err != nil {
		return err
	}
	if err := fn(txCtx); err != nil {
		_ = s.Rollback(txCtx)
		return err
	}
	return s.Commit(txCtx)
}
