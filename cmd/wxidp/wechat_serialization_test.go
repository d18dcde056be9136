package main

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// faultyStore is the real store with a serialization failure injected once
// on demand, where PostgreSQL would report one (SQLSTATE 40001 or 40P01)
// under concurrent first logins: linking the identity, or committing.
type faultyStore struct {
	storage.Store
	failLink, failCommit atomic.Bool
}

func (s *faultyStore) LinkWeChatIdentity(ctx context.Context, id *storage.WeChatIdentity, newUserID string) (*storage.User, error) {
	if s.failLink.CompareAndSwap(true, false) {
		return nil, fosite.ErrSerializationFailure
	}
	return s.Store.LinkWeChatIdentity(ctx, id, newUserID)
}

// Commit fails without committing; the caller must roll back, as after a
// real failed commit.
func (s *faultyStore) Commit(ctx context.Context) error {
	if s.failCommit.CompareAndSwap(true, false) {
		return fosite.ErrSerializationFailure
	}
	return s.Store.Commit(ctx)
}

// TestWeChatLoginSerializationFailure: a serialization failure while the
// WeChat grant links the identity or commits is 503 temporarily_unavailable
// asking for a retry, and leaves nothing behind (no user, identity, union or
// token); the next login of that user works.
func TestWeChatLoginSerializationFailure(t *testing.T) {
	t.Parallel()
	faults := &faultyStore{}
	e := newWeChatEnv(t, func(c *serveConfig) {
		c.wrapStore = func(s storage.Store) storage.Store { faults.Store = s; return faults }
	})
	e.miniProgram(t, "mp", "wxapp1")
	written := []string{"users", "wechat_identities", "wechat_unions", "oauth2_access_tokens", "oauth2_refresh_tokens"}
	for _, step := range []struct {
		name  string
		fault *atomic.Bool
	}{{"link", &faults.failLink}, {"commit", &faults.failCommit}} {
		step.fault.Store(true)
		status, h, body := e.login(t, "mp", e.wx.Login("wxapp1", "o-serial", "u-serial"), "scope", "openid offline_access")
		if step.fault.Load() {
			t.Fatalf("%s: the fault was never reached", step.name)
		}
		desc, _ := body["error_description"].(string)
		if status != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" || !strings.Contains(desc, "new code from wx.login()") {
			t.Errorf("%s: %d %v, want 503 temporarily_unavailable asking for a retry", step.name, status, body)
		}
		if h.Get("Retry-After") == "" || body["access_token"] != nil {
			t.Errorf("%s: Retry-After %q, body %v", step.name, h.Get("Retry-After"), body)
		}
		for _, table := range written {
			if n := e.count(t, table); n != 0 {
				t.Errorf("%s: %d rows in %s after the failed login", step.name, n, table)
			}
		}
	}
	if status, _, body := e.login(t, "mp", e.wx.Login("wxapp1", "o-serial", "u-serial"), "scope", "openid offline_access"); status != http.StatusOK {
		t.Fatalf("login after the failures: %d %v", status, body)
	}
	if n := e.count(t, "users"); n != 1 {
		t.Errorf("%d users after one successful login", n)
	}
}
