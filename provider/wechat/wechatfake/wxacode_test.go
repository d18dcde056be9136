package wechatfake_test

import (
	"bytes"
	"encoding/json"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/wxidp/wxidp/provider/wechat/wechatfake"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// wxaCode posts body to getwxacodeunlimit with access token tok and returns
// the answer's content type and body.
func wxaCode(t *testing.T, srv *wechattest.Server, tok, body string) (string, []byte) {
	t.Helper()
	target := srv.URL + wechatfake.PathWXACode
	if tok != "" {
		target += "?access_token=" + url.QueryEscape(tok)
	}
	resp, err := http.Post(target, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	return resp.Header.Get("Content-Type"), b
}

// refusal posts like wxaCode and returns the errcode, failing unless the
// answer is a JSON refusal.
func refusal(t *testing.T, srv *wechattest.Server, tok, reqBody string) float64 {
	t.Helper()
	ctype, body := wxaCode(t, srv, tok, reqBody)
	var m map[string]any
	if !strings.HasPrefix(ctype, "application/json") || json.Unmarshal(body, &m) != nil {
		t.Fatalf("answer %s %.40q is not a JSON refusal", ctype, body)
	}
	code, _ := m["errcode"].(float64)
	return code
}

func TestWXACodeRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		tok  func(srv *wechattest.Server, tok string) string
		body string
		want float64
	}{
		{"missing token", func(*wechattest.Server, string) string { return "" }, `{"scene":"s"}`, 41001},
		{"unknown token", func(*wechattest.Server, string) string { return "1_nope" }, `{"scene":"s"}`, 40001},
		{"superseded token", func(srv *wechattest.Server, tok string) string {
			post(t, srv, wechatfake.PathStableToken, "application/json", `{"grant_type":"client_credential","appid":"wxa","secret":"sec","force_refresh":true}`)
			return tok
		}, `{"scene":"s"}`, 40001},
		{"expired token", func(srv *wechattest.Server, tok string) string { srv.ExpireToken("wxa"); return tok }, `{"scene":"s"}`, 42001},
		{"not JSON", nil, `scene=s`, 47001},
		{"scene of wrong type", nil, `{"scene":12}`, 47001},
		{"no scene", nil, `{}`, 40129},
		{"empty scene", nil, `{"scene":""}`, 40129},
		{"scene of 33", nil, `{"scene":"` + strings.Repeat("a", 33) + `"}`, 40129},
		{"scene with space", nil, `{"scene":"a b"}`, 40129},
		{"scene with %", nil, `{"scene":"a%20b"}`, 40129},
		{"scene in Chinese", nil, `{"scene":"登录"}`, 40129},
		{"page with leading slash", nil, `{"scene":"s","page":"/pages/scan/index"}`, 41030},
		{"leading slash, check_path false", nil, `{"scene":"s","page":"/pages/scan/index","check_path":false}`, 41030},
		{"unpublished page", nil, `{"scene":"s","page":"pages/new/index"}`, 41030},
		{"unpublished page, check_path true", nil, `{"scene":"s","page":"pages/new/index","check_path":true}`, 41030},
		{"page published by another app", func(srv *wechattest.Server, tok string) string {
			srv.AddApp("wxb", "sec")
			srv.SetPublishedPages("wxb", "pages/b/index")
			return tok
		}, `{"scene":"s","page":"pages/b/index"}`, 41030},
		{"env_version unknown", nil, `{"scene":"s","env_version":"beta"}`, 40097},
		{"env_version empty", nil, `{"scene":"s","env_version":""}`, 40097},
		{"injected daily quota", func(srv *wechattest.Server, tok string) string {
			srv.FailNext(wechatfake.PathWXACode, 45009)
			return tok
		}, `{"scene":"s"}`, 45009},
		{"injected busy", func(srv *wechattest.Server, tok string) string {
			srv.FailNext(wechatfake.PathWXACode, -1)
			return tok
		}, `{"scene":"s"}`, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := wechattest.NewServer(t)
			srv.AddApp("wxa", "sec")
			tok := currentToken(t, srv)
			if tc.tok != nil {
				tok = tc.tok(srv, tok)
			}
			if got := refusal(t, srv, tok, tc.body); got != tc.want {
				t.Fatalf("errcode %v, want %v", got, tc.want)
			}
			if n := srv.Calls(wechatfake.PathWXACode); n != 1 {
				t.Errorf("calls = %d, want 1", n)
			}
			if got := srv.WXACodes(); len(got) != 0 {
				t.Errorf("a refusal drew %+v", got)
			}
		})
	}
}

func TestWXACodePicture(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       wechatfake.WXACode
	}{
		{"defaults", `{"scene":"t=abc"}`, wechatfake.WXACode{Scene: "t=abc", EnvVersion: "release", Width: 430}},
		{"every scene character", `{"scene":"Az09!#$&'()*+,/:;=?@-._~abcdefgh"}`,
			wechatfake.WXACode{Scene: "Az09!#$&'()*+,/:;=?@-._~abcdefgh", EnvVersion: "release", Width: 430}},
		{"default page", `{"scene":"s","page":"pages/scan/index","env_version":"release","width":600}`,
			wechatfake.WXACode{Scene: "s", Page: "pages/scan/index", EnvVersion: "release", Width: 600}},
		{"unpublished page, check_path false", `{"scene":"s","page":"pages/new/index","check_path":false,"env_version":"develop"}`,
			wechatfake.WXACode{Scene: "s", Page: "pages/new/index", EnvVersion: "develop", Width: 430}},
		{"width too small", `{"scene":"s","env_version":"trial","width":100}`, wechatfake.WXACode{Scene: "s", EnvVersion: "trial", Width: 280}},
		{"width too large", `{"scene":"s","width":5000}`, wechatfake.WXACode{Scene: "s", EnvVersion: "release", Width: 1280}},
		{"other fields ignored", `{"scene":"s","auto_color":false,"line_color":{"r":0,"g":0,"b":0}}`,
			wechatfake.WXACode{Scene: "s", EnvVersion: "release", Width: 430}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := wechattest.NewServer(t)
			srv.AddApp("wxa", "sec")
			ctype, body := wxaCode(t, srv, currentToken(t, srv), tc.body)
			if ctype != "image/png" {
				t.Fatalf("content type %q (%.80s)", ctype, body)
			}
			img, err := png.Decode(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != tc.want.Width || b.Dy() != tc.want.Width {
				t.Errorf("picture %v, want %d square", b, tc.want.Width)
			}
			// A quiet zone: the corner is white, and something is drawn.
			if c := color.GrayModel.Convert(img.At(0, 0)).(color.Gray); c.Y != 0xff {
				t.Errorf("corner pixel %v, want white", c)
			}
			c := tc.want.Width / 2
			dark := false
			for x := range tc.want.Width {
				dark = dark || color.GrayModel.Convert(img.At(x, c)).(color.Gray).Y == 0
			}
			if !dark {
				t.Error("no dark module on the middle row")
			}
			tc.want.AppID = "wxa"
			if got := srv.WXACodes(); len(got) != 1 || got[0] != tc.want {
				t.Errorf("recorded %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestWXACodeTransparent(t *testing.T) {
	srv := wechattest.NewServer(t)
	srv.AddApp("wxa", "sec")
	ctype, body := wxaCode(t, srv, currentToken(t, srv), `{"scene":"s","is_hyaline":true}`)
	img, err := png.Decode(bytes.NewReader(body))
	if ctype != "image/png" || err != nil {
		t.Fatalf("%s, %v", ctype, err)
	}
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Fatalf("corner alpha %d, want transparent", a)
	}
}

func TestWXACodePublishedPages(t *testing.T) {
	srv := wechattest.NewServer(t)
	srv.AddApp("wxa", "sec")
	tok := currentToken(t, srv)
	for _, p := range wechatfake.DefaultPages() {
		if ctype, _ := wxaCode(t, srv, tok, `{"scene":"s","page":"`+p+`"}`); ctype != "image/png" {
			t.Fatalf("default page %s refused", p)
		}
	}
	srv.SetPublishedPages("wxa", "pages/login/index")
	if got := refusal(t, srv, tok, `{"scene":"s","page":"pages/scan/index"}`); got != 41030 {
		t.Fatalf("page no longer published: errcode %v, want 41030", got)
	}
	if ctype, _ := wxaCode(t, srv, tok, `{"scene":"s","page":"pages/login/index"}`); ctype != "image/png" {
		t.Fatal("newly published page refused")
	}
	srv.AddApp("wxa", "new-secret") // changing the secret keeps the pages
	if ctype, _ := wxaCode(t, srv, tok, `{"scene":"s","page":"pages/login/index"}`); ctype != "image/png" {
		t.Fatal("AddApp reset the published pages")
	}
	srv.SetPublishedPages("nosuchapp", "x") // ignored, no panic
	if n := srv.Calls(wechatfake.PathWXACode); n != 5 || len(srv.WXACodes()) != 4 {
		t.Fatalf("calls = %d, codes = %d; want 5 and 4", n, len(srv.WXACodes()))
	}
}

func TestWXACodeMethod(t *testing.T) {
	srv := wechattest.NewServer(t)
	resp, err := http.Get(srv.URL + wechatfake.PathWXACode + "?access_token=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}
