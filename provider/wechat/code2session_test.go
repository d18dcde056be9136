package wechat

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/wechat/wechatfake"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

func TestCode2SessionSuccess(t *testing.T) {
	srv, c := setup(t)
	ctx := context.Background()

	s, err := c.Code2Session(ctx, testApp, testSecret, srv.Login(testApp, "o-alice", "u-alice"))
	if err != nil {
		t.Fatal(err)
	}
	if s.OpenID != "o-alice" || s.UnionID != "u-alice" || s.SessionKey != srv.SessionKey(testApp, "o-alice") {
		t.Fatalf("session = %+v, want alice with the fake's current key", s)
	}

	// Without an Open Platform binding there is no unionid.
	s, err = c.Code2Session(ctx, testApp, testSecret, srv.Login(testApp, "o-bob", ""))
	if err != nil || s.OpenID != "o-bob" || s.UnionID != "" {
		t.Fatalf("session = %v, %v; want bob without unionid", s, err)
	}
}

func TestCode2SessionRotatesSessionKey(t *testing.T) {
	srv, c := setup(t)
	ctx := context.Background()
	code1 := srv.Login(testApp, "o-alice", "")
	code2 := srv.Login(testApp, "o-alice", "")
	s1, err1 := c.Code2Session(ctx, testApp, testSecret, code1)
	s2, err2 := c.Code2Session(ctx, testApp, testSecret, code2)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if s1.SessionKey == s2.SessionKey || s2.SessionKey != srv.SessionKey(testApp, "o-alice") {
		t.Fatal("each wx.login must rotate the session_key; the latest one is current")
	}
}

// TestCode2SessionErrcodes checks every refusal the real API gives.
func TestCode2SessionErrcodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(srv *wechattest.Server, clk *clock) (appID, secret, code string)
		want  int
	}{
		{"missing appid", func(s *wechattest.Server, _ *clock) (string, string, string) {
			return "", testSecret, s.Login(testApp, "o", "")
		}, CodeMissingAppID},
		{"missing secret", func(s *wechattest.Server, _ *clock) (string, string, string) {
			return testApp, "", s.Login(testApp, "o", "")
		}, CodeMissingSecret},
		{"missing code", func(*wechattest.Server, *clock) (string, string, string) {
			return testApp, testSecret, ""
		}, CodeMissingCode},
		{"unknown appid", func(s *wechattest.Server, _ *clock) (string, string, string) {
			return "wxunknown", testSecret, s.Login("wxunknown", "o", "")
		}, CodeInvalidAppID},
		{"wrong secret", func(s *wechattest.Server, _ *clock) (string, string, string) {
			return testApp, "wrong", s.Login(testApp, "o", "")
		}, CodeInvalidSecret},
		{"unknown code", func(*wechattest.Server, *clock) (string, string, string) {
			return testApp, testSecret, "0123456789abcdef"
		}, CodeInvalidCode},
		{"code of another app", func(s *wechattest.Server, _ *clock) (string, string, string) {
			return testApp, testSecret, s.Login(otherApp, "o", "")
		}, CodeInvalidCode},
		{"expired code", func(s *wechattest.Server, clk *clock) (string, string, string) {
			code := s.Login(testApp, "o", "")
			clk.Advance(5 * time.Minute)
			return testApp, testSecret, code
		}, CodeInvalidCode},
		{"high risk", func(s *wechattest.Server, _ *clock) (string, string, string) {
			s.FailNext(wechattest.PathCode2Session, CodeHighRisk)
			return testApp, testSecret, s.Login(testApp, "o", "")
		}, CodeHighRisk},
		{"minute quota", func(s *wechattest.Server, _ *clock) (string, string, string) {
			s.FailNext(wechattest.PathCode2Session, CodeQuota)
			return testApp, testSecret, s.Login(testApp, "o", "")
		}, CodeQuota},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := setup(t)
			clk := newClock()
			srv.SetNow(clk.Now)
			appID, secret, code := tc.setup(srv, clk)
			_, err := c.Code2Session(context.Background(), appID, secret, code)
			ae := wantCode(t, err, tc.want)
			if ae.Op != "code2session" || ae.Msg == "" {
				t.Errorf("APIError = %#v, want op and WeChat's errmsg", ae)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Error("a refusal is not ErrUnavailable")
			}
			if n := srv.Calls(wechattest.PathCode2Session); n != 1 {
				t.Errorf("calls = %d, want 1: refusals are not retried", n)
			}
			noSecrets(t, err, testSecret, code)
		})
	}
}

func TestCode2SessionSingleUse(t *testing.T) {
	srv, c := setup(t)
	ctx := context.Background()
	code := srv.Login(testApp, "o-alice", "")
	if _, err := c.Code2Session(ctx, testApp, testSecret, code); err != nil {
		t.Fatal(err)
	}
	_, err := c.Code2Session(ctx, testApp, testSecret, code)
	ae := wantCode(t, err, CodeCodeUsed)
	if !strings.HasPrefix(ae.Msg, "code been used, rid: ") {
		t.Errorf("errmsg = %q, want WeChat's format", ae.Msg)
	}
}

// TestCode2SessionExpiry: valid until just before 5 minutes, refused at 5.
func TestCode2SessionExpiry(t *testing.T) {
	srv, c := setup(t)
	clk := newClock()
	srv.SetNow(clk.Now)
	ctx := context.Background()

	fresh := srv.Login(testApp, "o-a", "")
	stale := srv.Login(testApp, "o-b", "")
	clk.Advance(5*time.Minute - time.Second)
	if _, err := c.Code2Session(ctx, testApp, testSecret, fresh); err != nil {
		t.Fatalf("code at 4m59s: %v", err)
	}
	clk.Advance(time.Second)
	_, err := c.Code2Session(ctx, testApp, testSecret, stale)
	wantCode(t, err, CodeInvalidCode)
}

// TestCode2SessionRequest checks the exact request the real API expects.
func TestCode2SessionRequest(t *testing.T) {
	var got *http.Request
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(`{"session_key":"k","openid":"o"}`))
	}))
	defer ts.Close()
	c, err := New(ts.URL + "/prefix/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Code2Session(context.Background(), "wxa", "sec ret&", "co+de"); err != nil {
		t.Fatal(err)
	}
	q := got.URL.Query()
	if got.Method != http.MethodGet || got.URL.Path != "/prefix/sns/jscode2session" ||
		q.Get("appid") != "wxa" || q.Get("secret") != "sec ret&" || q.Get("js_code") != "co+de" ||
		q.Get("grant_type") != "authorization_code" {
		t.Fatalf("request = %s %s", got.Method, got.URL)
	}
	if got.ContentLength != 0 || len(got.TransferEncoding) != 0 {
		t.Fatalf("GET carries a body: length %d, encoding %v", got.ContentLength, got.TransferEncoding)
	}
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, base := range []string{"ftp://x", "api.weixin.qq.com", "https://", "https://x/?a=b", "://"} {
		if _, err := New(base); err == nil {
			t.Errorf("New(%q) accepted", base)
		}
	}
	c, err := New("")
	if err != nil || c.base != DefaultBaseURL {
		t.Fatalf("New(\"\") = %v, %v; want the real API", c, err)
	}
}

// TestCode2SessionOverHTTP2: over HTTP/2, which api.weixin.qq.com may speak,
// the non-replayable empty GET body (see once) is an empty DATA frame closing
// the stream: the server reads a GET of unknown length whose body is empty.
func TestCode2SessionOverHTTP2(t *testing.T) {
	fake := wechatfake.New()
	fake.AddApp(testApp, testSecret)
	var proto int
	var body []byte
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto = r.ProtoMajor
		body, _ = io.ReadAll(r.Body)
		fake.ServeHTTP(w, r)
	}))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	c, err := New(ts.URL, WithHTTPClient(ts.Client()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Code2Session(context.Background(), testApp, testSecret, fake.Login(testApp, "o-h2", ""))
	if err != nil || s.OpenID != "o-h2" {
		t.Fatalf("session = %v, %v", s, err)
	}
	if proto != 2 || len(body) != 0 {
		t.Fatalf("proto %d, body %q; want HTTP/2 with an empty body", proto, body)
	}
}
