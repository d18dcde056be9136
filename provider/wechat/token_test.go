package wechat

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

func TestStableTokenReuseAndForceRefresh(t *testing.T) {
	srv, c := setup(t)
	clk := newClock()
	srv.SetNow(clk.Now)
	ctx := context.Background()

	t1, err := c.StableToken(ctx, testApp, testSecret, false)
	if err != nil {
		t.Fatal(err)
	}
	if t1.Token == "" || t1.ExpiresIn != 7200*time.Second {
		t.Fatalf("token = %+v", t1)
	}

	// Normal mode: same token, remaining lifetime.
	clk.Advance(time.Hour)
	t2, err := c.StableToken(ctx, testApp, testSecret, false)
	if err != nil || t2.Token != t1.Token || t2.ExpiresIn != 3600*time.Second {
		t.Fatalf("second call = %+v, %v; want the same token with 1h left", t2, err)
	}
	if n := srv.TokensIssued(testApp); n != 1 {
		t.Fatalf("issued = %d, want 1", n)
	}

	// Forced refresh: a new token, and the old one dies at once.
	t3, err := c.StableToken(ctx, testApp, testSecret, true)
	if err != nil || t3.Token == t1.Token || t3.ExpiresIn != 7200*time.Second {
		t.Fatalf("forced = %+v, %v", t3, err)
	}
	if n := srv.TokensIssued(testApp); n != 2 {
		t.Fatalf("issued = %d, want 2", n)
	}
	_, err = c.PhoneNumber(ctx, t1.Token, srv.PhoneCode(testApp, "13800138000"))
	wantCode(t, err, CodeInvalidToken)
	noSecrets(t, err, t1.Token)

	// Natural expiry: 42001 for the old token, a new one from stable_token.
	clk.Advance(7200 * time.Second)
	_, err = c.PhoneNumber(ctx, t3.Token, srv.PhoneCode(testApp, "13800138000"))
	wantCode(t, err, CodeTokenExpired)
	t4, err := c.StableToken(ctx, testApp, testSecret, false)
	if err != nil || t4.Token == t3.Token {
		t.Fatalf("after expiry = %+v, %v; want a new token", t4, err)
	}

	// Tokens are per app.
	o, err := c.StableToken(ctx, otherApp, "other-"+testSecret, false)
	if err != nil || o.Token == t4.Token {
		t.Fatalf("other app = %+v, %v", o, err)
	}
}

func TestStableTokenErrcodes(t *testing.T) {
	for _, tc := range []struct {
		name, appID, secret string
		inject, want        int
	}{
		{"missing appid", "", testSecret, 0, CodeMissingAppID},
		{"missing secret", testApp, "", 0, CodeMissingSecret},
		{"unknown appid", "wxnope", testSecret, 0, CodeInvalidAppID},
		{"wrong secret", testApp, "wrong", 0, CodeInvalidSecret},
		{"quota", testApp, testSecret, CodeQuota, CodeQuota},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := setup(t)
			if tc.inject != 0 {
				srv.FailNext(wechattest.PathStableToken, tc.inject)
			}
			_, err := c.StableToken(context.Background(), tc.appID, tc.secret, false)
			wantCode(t, err, tc.want)
			noSecrets(t, err, testSecret, tc.secret)
			if n := srv.Calls(wechattest.PathStableToken); n != 1 {
				t.Errorf("calls = %d, want 1", n)
			}
		})
	}
}

// TestStableTokenRequest checks the exact body the real API expects.
func TestStableTokenRequest(t *testing.T) {
	var body map[string]any
	var method, path, ctype string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, path, ctype = r.Method, r.URL.Path, r.Header.Get("Content-Type")
		_ = json.NewDecoder(r.Body).Decode(&body)
		_, _ = fmt.Fprint(w, `{"access_token":"AT","expires_in":7000}`)
	}))
	defer ts.Close()
	c, _ := New(ts.URL)
	tok, err := c.StableToken(context.Background(), "wxa", "sec", true)
	if err != nil || tok.Token != "AT" || tok.ExpiresIn != 7000*time.Second {
		t.Fatalf("token = %+v, %v", tok, err)
	}
	want := map[string]any{"grant_type": "client_credential", "appid": "wxa", "secret": "sec", "force_refresh": true}
	if method != http.MethodPost || path != "/cgi-bin/stable_token" || ctype != "application/json" || fmt.Sprint(body) != fmt.Sprint(want) {
		t.Fatalf("request = %s %s %s %v", method, path, ctype, body)
	}
}

// TestSecretValuesHiddenFromFormatting: Session and AccessToken print
// without their secrets, so a careless log line cannot leak them.
func TestSecretValuesHiddenFromFormatting(t *testing.T) {
	s := Session{OpenID: "o", SessionKey: "SESSIONKEY"}
	tok := AccessToken{Token: "ACCESSTOKEN", ExpiresIn: time.Hour}
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%v", &s),
		fmt.Sprint(tok), fmt.Sprintf("%+v", tok), fmt.Sprintf("%#v", tok),
	} {
		if strings.Contains(out, "SESSIONKEY") || strings.Contains(out, "ACCESSTOKEN") {
			t.Errorf("formatted value leaks: %s", out)
		}
	}
}
