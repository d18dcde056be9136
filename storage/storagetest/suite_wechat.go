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

// codeTTL is how long WeChat accepts a wx.login code.
const codeTTL = 5 * time.Minute

// testWeChatCodes covers replay protection for wx.login codes: a code
// presented twice, by one process or two, must reach WeChat once.
func testWeChatCodes(t *testing.T, su suite) {
	su.run(t, "ClaimOnce", func(t *testing.T, ctx context.Context, s storage.Store) {
		exp := time.Now().Add(codeTTL)
		if err := s.ClaimWeChatCode(ctx, appA, "hash-1", exp); err != nil {
			t.Fatalf("first ClaimWeChatCode: %v", err)
		}
		if err := s.ClaimWeChatCode(ctx, appA, "hash-1", exp); !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("second ClaimWeChatCode: %v, want ErrAlreadyExists", err)
		}
		if err := s.ClaimWeChatCode(ctx, appA, "hash-2", exp); err != nil {
			t.Errorf("ClaimWeChatCode of another code: %v", err)
		}
		if err := s.ClaimWeChatCode(ctx, appB, "hash-1", exp); err != nil {
			t.Errorf("ClaimWeChatCode of the same hash under another app: %v", err)
		}
	})

	// WeChat itself refuses an expired code, so its record may go and the
	// key be claimed again.
	su.run(t, "ExpiredCanBeClaimedAgain", func(t *testing.T, ctx context.Context, s storage.Store) {
		if err := s.ClaimWeChatCode(ctx, appA, "hash-1", time.Now().Add(-time.Second)); err != nil {
			t.Fatalf("ClaimWeChatCode with a past expiry: %v", err)
		}
		if err := s.ClaimWeChatCode(ctx, appA, "hash-1", time.Now().Add(codeTTL)); err != nil {
			t.Fatalf("ClaimWeChatCode over an expired claim: %v", err)
		}
		if err := s.ClaimWeChatCode(ctx, appA, "hash-1", time.Now().Add(codeTTL)); !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("ClaimWeChatCode after claiming it again: %v, want ErrAlreadyExists", err)
		}
	})

	// Expired claims of other codes are dropped along the way; none of that
	// may touch a live claim.
	su.run(t, "ManyExpired", func(t *testing.T, ctx context.Context, s storage.Store) {
		for i := range 20 {
			if err := s.ClaimWeChatCode(ctx, appA, fmt.Sprintf("old-%d", i), time.Now().Add(-time.Minute)); err != nil {
				t.Fatalf("ClaimWeChatCode(old-%d): %v", i, err)
			}
			if err := s.ClaimWeChatCode(ctx, appA, fmt.Sprintf("live-%d", i), time.Now().Add(codeTTL)); err != nil {
				t.Fatalf("ClaimWeChatCode(live-%d): %v", i, err)
			}
		}
		for i := range 20 {
			if err := s.ClaimWeChatCode(ctx, appA, fmt.Sprintf("live-%d", i), time.Now().Add(codeTTL)); !errors.Is(err, storage.ErrAlreadyExists) {
				t.Errorf("ClaimWeChatCode(live-%d) again: %v, want ErrAlreadyExists", i, err)
			}
		}
	})

	su.run(t, "Concurrent", func(t *testing.T, ctx context.Context, s storage.Store) {
		exp := time.Now().Add(codeTTL)
		errs := parallel(20, func(int) error { return s.ClaimWeChatCode(ctx, appA, "hash-1", exp) })
		checkOneWins(t, "ClaimWeChatCode", errs, storage.ErrAlreadyExists)
	})
}

// checkOneWins fails unless exactly one call succeeded and every other
// failed with loss.
func checkOneWins(t *testing.T, what string, errs []error, loss error) {
	t.Helper()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, loss):
			t.Errorf("%s #%d: %v, want nil or %v", what, i, err, loss)
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent %s calls succeeded, want exactly 1", wins, what)
	}
}

// errLeaseRefused stands for a lease not granted in parallel calls.
var errLeaseRefused = errors.New("lease refused")

func lease(ctx context.Context, s storage.Store, app string, now time.Time, d time.Duration) error {
	ok, err := s.LeaseWeChatTokenRefresh(ctx, app, now, now.Add(d))
	if err == nil && !ok {
		err = errLeaseRefused
	}
	return err
}

func checkLease(t *testing.T, ctx context.Context, s storage.Store, app string, now time.Time, d time.Duration, want bool) {
	t.Helper()
	err := lease(ctx, s, app, now, d)
	if got := err == nil; got != want || (err != nil && !errors.Is(err, errLeaseRefused)) {
		t.Errorf("LeaseWeChatTokenRefresh(%s, now %v, for %v): %v, want granted = %v", app, now.Format(time.TimeOnly), d, err, want)
	}
}

// testWeChatTokens covers the shared WeChat access token: every process
// reads one token, and one process at a time refreshes it.
func testWeChatTokens(t *testing.T, su suite) {
	su.run(t, "NotFoundBeforeSave", func(t *testing.T, ctx context.Context, s storage.Store) {
		if _, err := s.GetWeChatToken(ctx, appA); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetWeChatToken before any save: %v, want ErrNotFound", err)
		}
		// A lease alone is no token.
		checkLease(t, ctx, s, appA, time.Now(), time.Minute, true)
		if _, err := s.GetWeChatToken(ctx, appA); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetWeChatToken with only a lease: %v, want ErrNotFound", err)
		}
	})

	su.run(t, "LeaseExclusiveUntilExpiry", func(t *testing.T, ctx context.Context, s storage.Store) {
		t0 := usec(time.Now())
		checkLease(t, ctx, s, appA, t0, 30*time.Second, true) // no row yet
		checkLease(t, ctx, s, appA, t0, 30*time.Second, false)
		checkLease(t, ctx, s, appA, t0.Add(29*time.Second), 30*time.Second, false)
		checkLease(t, ctx, s, appB, t0, 30*time.Second, true) // per appid
		// Lapsed: the holder died or hangs; someone else may refresh.
		checkLease(t, ctx, s, appA, t0.Add(30*time.Second), 30*time.Second, true)
		checkLease(t, ctx, s, appA, t0.Add(59*time.Second), 30*time.Second, false)
	})

	su.run(t, "ConcurrentLease", func(t *testing.T, ctx context.Context, s storage.Store) {
		now := time.Now()
		errs := parallel(20, func(int) error { return lease(ctx, s, appA, now, time.Minute) })
		checkOneWins(t, "LeaseWeChatTokenRefresh", errs, errLeaseRefused)
	})

	su.run(t, "SaveStoresReplacesReleases", func(t *testing.T, ctx context.Context, s storage.Store) {
		now := time.Now()
		checkLease(t, ctx, s, appA, now, time.Minute, true)
		first := &storage.WeChatToken{AppID: appA, Token: []byte{0, 1, 0xff}, ExpiresAt: usec(now.Add(2 * time.Hour))}
		before := time.Now()
		if err := s.SaveWeChatToken(ctx, first); err != nil {
			t.Fatalf("SaveWeChatToken: %v", err)
		}
		checkToken(t, ctx, s, first, before, time.Now())
		// Saving ends the refresh: the next one need not wait a minute.
		checkLease(t, ctx, s, appA, now, time.Minute, true)

		second := &storage.WeChatToken{AppID: appA, Token: []byte("second"), ExpiresAt: usec(now.Add(4 * time.Hour))}
		before = time.Now()
		if err := s.SaveWeChatToken(ctx, second); err != nil {
			t.Fatalf("SaveWeChatToken over a token: %v", err)
		}
		checkToken(t, ctx, s, second, before, time.Now())
		checkLease(t, ctx, s, appA, now, time.Minute, true)
		if _, err := s.GetWeChatToken(ctx, appB); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetWeChatToken of another appid: %v, want ErrNotFound", err)
		}
		// Saving with no lease taken (a first start) works as well.
		third := &storage.WeChatToken{AppID: appB, Token: []byte("third"), ExpiresAt: usec(now.Add(time.Hour))}
		if err := s.SaveWeChatToken(ctx, third); err != nil {
			t.Fatalf("SaveWeChatToken without a lease: %v", err)
		}
		checkToken(t, ctx, s, third, before, time.Now())
	})
}

func checkToken(t *testing.T, ctx context.Context, s storage.Store, want *storage.WeChatToken, before, after time.Time) {
	t.Helper()
	got, err := s.GetWeChatToken(ctx, want.AppID)
	if err != nil {
		t.Fatalf("GetWeChatToken(%s): %v", want.AppID, err)
	}
	if got.AppID != want.AppID || !bytes.Equal(got.Token, want.Token) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("token = {%s %q %v}, want {%s %q %v}", got.AppID, got.Token, got.ExpiresAt, want.AppID, want.Token, want.ExpiresAt)
	}
	checkRecent(t, "token UpdatedAt", got.UpdatedAt, before, after)
}

// wechatTxCases are the writes of users.go run inside a transaction: the
// provider links a login in the transaction that stores its tokens, so a
// failure after the link must leave neither a user nor an identity.
func wechatTxCases() []txCase {
	none := func(*testing.T, context.Context, storage.Store) {}
	first := login{appA, "o-a", "union-1", "user-1"}
	linked := func(t *testing.T, ctx context.Context, s storage.Store) { mustLink(t, ctx, s, first) }
	noLink := func(t *testing.T, ctx context.Context, s storage.Store) {
		t.Helper()
		checkNoUser(t, ctx, s, "user-1")
		if _, err := s.GetWeChatIdentity(ctx, appA, "o-a"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetWeChatIdentity: %v, want ErrNotFound", err)
		}
		// Nor a unionid record: the person's login in app B is a new user.
		checkLinksTo(t, ctx, s, login{appB, "o-b", "union-1", "user-2"}, "user-2")
	}
	identity := func(union string, key []byte) func(t *testing.T, ctx context.Context, s storage.Store) {
		return func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			checkIdentity(t, ctx, s, appA, "o-a", union, "user-1", key)
		}
	}
	phone := func(want string) func(t *testing.T, ctx context.Context, s storage.Store) {
		return func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			if u, err := s.GetUser(ctx, "user-1"); err != nil || u.PhoneNumber != want {
				t.Errorf("GetUser = %+v, %v; want phone %q", u, err, want)
			}
		}
	}
	claim := func(want error) func(t *testing.T, ctx context.Context, s storage.Store) {
		return func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			if err := s.ClaimWeChatCode(ctx, appA, "hash-1", time.Now().Add(codeTTL)); !errors.Is(err, want) {
				t.Errorf("ClaimWeChatCode: %v, want %v", err, want)
			}
		}
	}
	leased := func(t *testing.T, ctx context.Context, s storage.Store) {
		checkLease(t, ctx, s, appA, time.Now(), time.Hour, true)
	}
	leaseFree := func(want bool) func(t *testing.T, ctx context.Context, s storage.Store) {
		return func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			checkLease(t, ctx, s, appA, time.Now(), time.Hour, want)
		}
	}
	// A token per call: the Rollback and Commit variants run in parallel,
	// and SaveWeChatToken sets UpdatedAt on what it is given.
	token := func() *storage.WeChatToken {
		return &storage.WeChatToken{AppID: appA, Token: []byte("tok"), ExpiresAt: usec(time.Now().Add(time.Hour))}
	}

	return []txCase{
		{
			name:  "LinkWeChatIdentity",
			setup: none,
			write: func(ctx context.Context, s storage.Store) error {
				_, err := s.LinkWeChatIdentity(ctx, first.identity(), first.newUserID)
				return err
			},
			before: noLink,
			after: func(t *testing.T, ctx context.Context, s storage.Store) {
				identity("union-1", first.identity().SessionKey)(t, ctx, s)
				checkLinksTo(t, ctx, s, login{appB, "o-b", "union-1", "user-2"}, "user-1")
			},
		},
		{
			name: "LinkKnownIdentity",
			setup: func(t *testing.T, ctx context.Context, s storage.Store) {
				mustLink(t, ctx, s, login{appA, "o-a", "", "user-1"})
			},
			write: func(ctx context.Context, s storage.Store) error {
				_, err := s.LinkWeChatIdentity(ctx, first.identity(), "user-x")
				return err
			},
			before: identity("", []byte("sealed-key-user-1")),
			after:  identity("union-1", first.identity().SessionKey),
		},
		{
			name:  "SetUserPhone",
			setup: linked,
			write: func(ctx context.Context, s storage.Store) error {
				return s.SetUserPhone(ctx, "user-1", "+8613800138000")
			},
			before: phone(""),
			after:  phone("+8613800138000"),
		},
		{
			name:  "ClaimWeChatCode",
			setup: none,
			write: func(ctx context.Context, s storage.Store) error {
				return s.ClaimWeChatCode(ctx, appA, "hash-1", time.Now().Add(codeTTL))
			},
			before: claim(nil),
			after:  claim(storage.ErrAlreadyExists),
		},
		{
			name:   "LeaseWeChatTokenRefresh",
			setup:  none,
			write:  func(ctx context.Context, s storage.Store) error { return lease(ctx, s, appA, time.Now(), time.Hour) },
			before: leaseFree(true),
			after:  leaseFree(false),
		},
		{
			name:  "SaveWeChatToken",
			setup: leased,
			write: func(ctx context.Context, s storage.Store) error { return s.SaveWeChatToken(ctx, token()) },
			before: func(t *testing.T, ctx context.Context, s storage.Store) {
				if _, err := s.GetWeChatToken(ctx, appA); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("GetWeChatToken: %v, want ErrNotFound", err)
				}
				leaseFree(false)(t, ctx, s) // the lease is back
			},
			after: func(t *testing.T, ctx context.Context, s storage.Store) {
				if got, err := s.GetWeChatToken(ctx, appA); err != nil || !bytes.Equal(got.Token, []byte("tok")) {
					t.Errorf("GetWeChatToken = %+v, %v; want the saved token", got, err)
				}
				leaseFree(true)(t, ctx, s)
			},
		},
	}
}
