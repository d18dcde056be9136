package wechatfake_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/wxidp/wxidp/provider/wechat/wechatfake"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

func get(t *testing.T, srv *wechattest.Server, path string, q url.Values) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.Get(srv.URL + path + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	return resp, decode(t, resp)
}

func post(t *testing.T, srv *wechattest.Server, path, ctype, body string) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.Post(srv.URL+path, ctype, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return resp, decode(t, resp)
}

func decode(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := map[string]any{}
	if resp.StatusCode == http.StatusOK || strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
	}
	return m
}

// TestWireFormat pins the details clients trip over on the real API.
func TestWireFormat(t *testing.T) {
	srv := wechattest.NewServer(t)
	srv.AddApp("wxa", "sec")
	q := url.Values{"appid": {"wxa"}, "secret": {"sec"}, "grant_type": {"authorization_code"}}

	q.Set("js_code", srv.Login("wxa", "o1", ""))
	resp, m := get(t, srv, wechatfake.PathCode2Session, q)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if _, ok := m["errcode"]; ok {
		t.Errorf("success carries errcode: %v", m)
	}
	if _, ok := m["unionid"]; ok {
		t.Errorf("unionid without a binding: %v", m)
	}
	if key, err := base64.StdEncoding.DecodeString(m["session_key"].(string)); err != nil || len(key) != 16 {
		t.Errorf("session_key %v is not 16 bytes in base64", m["session_key"])
	}

	// Refusals: HTTP 200, errcode and "msg, rid: hex-hex-hex".
	resp, m = get(t, srv, wechatfake.PathCode2Session, q) // same code again
	if resp.StatusCode != 200 || m["errcode"] != float64(40163) ||
		!regexp.MustCompile(`^code been used, rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$`).MatchString(m["errmsg"].(string)) {
		t.Errorf("reused code: %d %v", resp.StatusCode, m)
	}

	// Methods as the real API: GET for code2session, POST for the others.
	resp, _ = post(t, srv, wechatfake.PathCode2Session, "application/json", "{}")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST code2session: %d", resp.StatusCode)
	}
	resp, _ = get(t, srv, wechatfake.PathStableToken, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET stable_token: %d", resp.StatusCode)
	}

	// stable_token: bad JSON and bad grant_type.
	_, m = post(t, srv, wechatfake.PathStableToken, "application/json", "not json")
	if m["errcode"] != float64(47001) {
		t.Errorf("bad JSON: %v", m)
	}
	_, m = post(t, srv, wechatfake.PathStableToken, "application/json", `{"grant_type":"x","appid":"wxa","secret":"sec"}`)
	if m["errcode"] != float64(40002) {
		t.Errorf("bad grant_type: %v", m)
	}
	resp, m = post(t, srv, wechatfake.PathStableToken, "application/json", `{"grant_type":"client_credential","appid":"wxa","secret":"sec"}`)
	if m["expires_in"] != float64(7200) || m["access_token"] == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("stable_token: %v", m)
	}

	// getuserphonenumber: missing token, then the documented success shape.
	_, m = post(t, srv, wechatfake.PathPhoneNumber, "application/json", `{"code":"x"}`)
	if m["errcode"] != float64(41001) {
		t.Errorf("missing access_token: %v", m)
	}
	code := srv.PhoneCode("wxa", "13800138000")
	_, m = post(t, srv, wechatfake.PathPhoneNumber+"?access_token="+url.QueryEscape(currentToken(t, srv)), "application/json", `{"code":"`+code+`"}`)
	info, _ := m["phone_info"].(map[string]any)
	wm, _ := info["watermark"].(map[string]any)
	if m["errcode"] != float64(0) || m["errmsg"] != "ok" || info["countryCode"] != float64(86) || wm["appid"] != "wxa" {
		t.Errorf("phone: %v", m)
	}
}

// m2s fetches wxa's current token.
func currentToken(t *testing.T, srv *wechattest.Server) string {
	_, m := post(t, srv, wechatfake.PathStableToken, "application/json", `{"grant_type":"client_credential","appid":"wxa","secret":"sec"}`)
	return m["access_token"].(string)
}

// TestInjectedFailureKeepsCode: FailNext answers before processing, and
// failures are consumed in order.
func TestInjectedFailureKeepsCode(t *testing.T) {
	srv := wechattest.NewServer(t)
	srv.AddApp("wxa", "sec")
	srv.FailNext(wechatfake.PathCode2Session, -1)
	srv.FailNext(wechatfake.PathCode2Session, 45011)
	q := url.Values{"appid": {"wxa"}, "secret": {"sec"}, "grant_type": {"authorization_code"}, "js_code": {srv.Login("wxa", "o", "u")}}
	for _, want := range []any{float64(-1), float64(45011), nil} {
		if _, m := get(t, srv, wechatfake.PathCode2Session, q); m["errcode"] != want {
			t.Fatalf("errcode = %v, want %v (%v)", m["errcode"], want, m)
		}
	}
	if srv.Calls(wechatfake.PathCode2Session) != 3 {
		t.Fatalf("calls = %d", srv.Calls(wechatfake.PathCode2Session))
	}
}

func TestFakeLoginEndpoint(t *testing.T) {
	srv := wechattest.NewServer(t)
	srv.AddApp("wxa", "sec")
	for _, tc := range []struct{ ctype, body string }{
		{"application/x-www-form-urlencoded", "appid=wxa&openid=o1&unionid=u1"},
		{"application/json", `{"appid":"wxa","openid":"o1","unionid":"u1"}`},
	} {
		resp, m := post(t, srv, "/_fake/login", tc.ctype, tc.body)
		code, _ := m["code"].(string)
		if resp.StatusCode != 200 || code == "" {
			t.Fatalf("%s: %d %v", tc.ctype, resp.StatusCode, m)
		}
		q := url.Values{"appid": {"wxa"}, "secret": {"sec"}, "grant_type": {"authorization_code"}, "js_code": {code}}
		if _, s := get(t, srv, wechatfake.PathCode2Session, q); s["openid"] != "o1" || s["unionid"] != "u1" {
			t.Fatalf("exchange: %v", s)
		}
	}
	for _, body := range []string{"openid=o1", "appid=wxa", "appid=nope&openid=o1"} {
		if resp, m := post(t, srv, "/_fake/login", "application/x-www-form-urlencoded", body); resp.StatusCode != 400 || m["error"] == "" {
			t.Errorf("%s: %d %v", body, resp.StatusCode, m)
		}
	}
	resp, m := post(t, srv, "/_fake/phonecode", "application/json", `{"appid":"wxa","phone":"13800138000"}`)
	if resp.StatusCode != 200 || m["code"] == "" {
		t.Fatalf("phonecode: %d %v", resp.StatusCode, m)
	}
}

// TestFakeConcurrentUse mixes requests and programming calls; run under
// -race.
func TestFakeConcurrentUse(t *testing.T) {
	srv := wechattest.NewServer(t)
	srv.AddApp("wxa", "sec")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			q := url.Values{"appid": {"wxa"}, "secret": {"sec"}, "grant_type": {"authorization_code"}, "js_code": {srv.Login("wxa", "o", "")}}
			resp, err := http.Get(srv.URL + wechatfake.PathCode2Session + "?" + q.Encode())
			if err != nil {
				t.Error(err)
				return
			}
			var m map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
			if m["openid"] != "o" {
				t.Errorf("exchange: %v", m)
			}
		})
		wg.Go(func() {
			srv.AddApp("wxb", "sec")
			srv.FailNext(wechatfake.PathStableToken, 45011)
			srv.SetDelay(0)
			srv.ExpireToken("wxa")
			srv.SetCountryCodeString(i%2 == 0)
			_ = srv.PhoneCode("wxa", "13800138000")
			_ = srv.Calls(wechatfake.PathStableToken) + srv.TokensIssued("wxa")
			resp, err := http.Post(srv.URL+wechatfake.PathStableToken, "application/json",
				strings.NewReader(`{"grant_type":"client_credential","appid":"wxa","secret":"sec"}`))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
}
