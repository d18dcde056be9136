package wechat

import (
	"context"
	"testing"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// TestCheckSession: the user's current session_key checks valid; the one a
// later wx.login replaced, or another user's, does not; a bad access token
// is an error, not an answer about the key.
func TestCheckSession(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx := context.Background()
	first, err := c.Code2Session(ctx, testApp, testSecret, srv.Login(testApp, "o-1", ""))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.StableToken(ctx, testApp, testSecret, false)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.CheckSession(ctx, tok.Token, "o-1", first.SessionKey); !ok || err != nil {
		t.Fatalf("current session_key: %v, %v", ok, err)
	}
	second, err := c.Code2Session(ctx, testApp, testSecret, srv.Login(testApp, "o-1", ""))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.CheckSession(ctx, tok.Token, "o-1", first.SessionKey); ok || err != nil {
		t.Errorf("replaced session_key: %v, %v; want false, nil", ok, err)
	}
	if ok, err := c.CheckSession(ctx, tok.Token, "o-2", second.SessionKey); ok || err != nil {
		t.Errorf("another user's session_key: %v, %v; want false, nil", ok, err)
	}
	if ok, err := c.CheckSession(ctx, tok.Token, "o-1", second.SessionKey); !ok || err != nil {
		t.Errorf("the new session_key: %v, %v", ok, err)
	}
	if _, err := c.CheckSession(ctx, "bogus", "o-1", second.SessionKey); err == nil {
		t.Error("a bad access token answered")
	} else {
		wantCode(t, err, CodeInvalidToken)
		noSecrets(t, err, second.SessionKey, "bogus")
	}
	if n := srv.Calls(wechattest.PathCheckSession); n != 5 {
		t.Errorf("%d checksession calls reached the fake, want 5", n)
	}
}
