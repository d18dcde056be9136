package wechat

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

func TestPhoneNumber(t *testing.T) {
	for _, tc := range []struct {
		name, input      string
		asString         bool
		number, pure, cc string
	}{
		{"mainland, countryCode as number", "13800138000", false, "13800138000", "13800138000", "86"},
		{"mainland, countryCode as string", "13800138000", true, "13800138000", "13800138000", "86"},
		{"abroad", "+1 2025550123", false, "+1 2025550123", "2025550123", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := setup(t)
			clk := newClock()
			srv.SetNow(clk.Now)
			srv.SetCountryCodeString(tc.asString)
			ctx := context.Background()
			tok, err := c.StableToken(ctx, testApp, testSecret, false)
			if err != nil {
				t.Fatal(err)
			}
			p, err := c.PhoneNumber(ctx, tok.Token, srv.PhoneCode(testApp, tc.input))
			if err != nil {
				t.Fatal(err)
			}
			want := Phone{PhoneNumber: tc.number, PurePhoneNumber: tc.pure, CountryCode: tc.cc,
				WatermarkAppID: testApp, WatermarkTime: clk.Now()}
			if !p.WatermarkTime.Equal(want.WatermarkTime) {
				t.Fatalf("watermark time = %v, want %v", p.WatermarkTime, want.WatermarkTime)
			}
			p.WatermarkTime = want.WatermarkTime
			if p != want {
				t.Fatalf("phone = %+v, want %+v", p, want)
			}
		})
	}
}

func TestPhoneNumberErrcodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(s *wechattest.Server, clk *clock, tok string) (token, code string)
		want  int
	}{
		{"unknown token", func(s *wechattest.Server, _ *clock, _ string) (string, string) {
			return "12_unknown", s.PhoneCode(testApp, "13800138000")
		}, CodeInvalidToken},
		{"expired token", func(s *wechattest.Server, _ *clock, tok string) (string, string) {
			s.ExpireToken(testApp)
			return tok, s.PhoneCode(testApp, "13800138000")
		}, CodeTokenExpired},
		{"missing code", func(_ *wechattest.Server, _ *clock, tok string) (string, string) {
			return tok, ""
		}, CodeMissingCode},
		{"unknown code", func(_ *wechattest.Server, _ *clock, tok string) (string, string) {
			return tok, "deadbeef"
		}, CodeInvalidCode},
		{"code of another app", func(s *wechattest.Server, _ *clock, tok string) (string, string) {
			return tok, s.PhoneCode(otherApp, "13800138000")
		}, CodeInvalidCode},
		{"expired code", func(s *wechattest.Server, clk *clock, tok string) (string, string) {
			code := s.PhoneCode(testApp, "13800138000")
			clk.Advance(5 * time.Minute)
			return tok, code
		}, CodeInvalidCode},
		{"quota", func(s *wechattest.Server, _ *clock, tok string) (string, string) {
			s.FailNext(wechattest.PathPhoneNumber, CodeQuota)
			return tok, s.PhoneCode(testApp, "13800138000")
		}, CodeQuota},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := setup(t)
			clk := newClock()
			srv.SetNow(clk.Now)
			tok, err := c.StableToken(context.Background(), testApp, testSecret, false)
			if err != nil {
				t.Fatal(err)
			}
			token, code := tc.setup(srv, clk, tok.Token)
			_, err = c.PhoneNumber(context.Background(), token, code)
			wantCode(t, err, tc.want)
			noSecrets(t, err, token, code)
			if n := srv.Calls(wechattest.PathPhoneNumber); n != 1 {
				t.Errorf("calls = %d, want 1", n)
			}
		})
	}
}

func TestPhoneCodeSingleUse(t *testing.T) {
	srv, c := setup(t)
	ctx := context.Background()
	tok, err := c.StableToken(ctx, testApp, testSecret, false)
	if err != nil {
		t.Fatal(err)
	}
	code := srv.PhoneCode(testApp, "13800138000")
	if _, err := c.PhoneNumber(ctx, tok.Token, code); err != nil {
		t.Fatal(err)
	}
	_, err = c.PhoneNumber(ctx, tok.Token, code)
	wantCode(t, err, CodeCodeUsed)
}

// TestPhoneCodeSurvivesStaleToken: the token is checked first, so after a
// refresh the same phone code still works.
func TestPhoneCodeSurvivesStaleToken(t *testing.T) {
	srv, c := setup(t)
	ctx := context.Background()
	old, _ := c.StableToken(ctx, testApp, testSecret, false)
	srv.ExpireToken(testApp)
	code := srv.PhoneCode(testApp, "13800138000")
	_, err := c.PhoneNumber(ctx, old.Token, code)
	wantCode(t, err, CodeTokenExpired)
	fresh, err := c.StableToken(ctx, testApp, testSecret, false)
	if err != nil || fresh.Token == old.Token {
		t.Fatalf("refresh = %v, %v", fresh, err)
	}
	if _, err := c.PhoneNumber(ctx, fresh.Token, code); err != nil {
		t.Fatalf("same code after refresh: %v", err)
	}
}

// TestPhoneNumberWireFormats decodes answers shaped as WeChat's
// documentation and real traffic show them.
func TestPhoneNumberWireFormats(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		wantCC     string
		wantErr    bool
	}{
		{"number", `{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"138","purePhoneNumber":"138","countryCode":86,"watermark":{"timestamp":1637744274,"appid":"wxa"}}}`, "86", false},
		{"string", `{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"138","purePhoneNumber":"138","countryCode":"86","watermark":{"timestamp":1637744274,"appid":"wxa"}}}`, "86", false},
		{"no errcode", `{"phone_info":{"phoneNumber":"138","purePhoneNumber":"138","countryCode":"86","watermark":{"timestamp":1637744274,"appid":"wxa"}}}`, "86", false},
		{"no phone_info", `{"errcode":0,"errmsg":"ok"}`, "", true},
		{"bad countryCode", `{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"138","countryCode":true}}`, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gotBody, gotToken string
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotToken = r.URL.Query().Get("access_token")
				b := make([]byte, 100)
				n, _ := r.Body.Read(b)
				gotBody = string(b[:n])
				_, _ = fmt.Fprint(w, tc.body)
			}))
			defer ts.Close()
			c, _ := New(ts.URL)
			p, err := c.PhoneNumber(context.Background(), "AT+/=", "PHONECODE")
			if gotToken != "AT+/=" || gotBody != `{"code":"PHONECODE"}` {
				t.Fatalf("request token %q body %q", gotToken, gotBody)
			}
			if tc.wantErr {
				if err == nil {
					t.Fatalf("phone = %+v, want an error", p)
				}
				noSecrets(t, err, "AT+/=", "PHONECODE")
				return
			}
			if err != nil || p.CountryCode != tc.wantCC || p.WatermarkAppID != "wxa" || p.WatermarkTime.Unix() != 1637744274 {
				t.Fatalf("phone = %+v, %v", p, err)
			}
		})
	}
}
