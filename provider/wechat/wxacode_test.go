package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wxidp/wxidp/provider/wechat/wechatfake"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// token fetches testApp's current access token from the fake.
func token(t *testing.T, c *Client) string {
	t.Helper()
	tok, err := c.StableToken(context.Background(), testApp, testSecret, false)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func TestWXACodeUnlimited(t *testing.T) {
	srv, c := setup(t)
	const scene = "t=Ab0-._~!$&'()*+,/:;=?@#0123456" // 32 characters, every allowed symbol
	code, err := c.WXACodeUnlimited(context.Background(), token(t, c),
		WXACodeRequest{Scene: scene, Page: "pages/scan/index", Width: 500})
	if err != nil {
		t.Fatal(err)
	}
	if code.ContentType != "image/png" {
		t.Fatalf("content type %q", code.ContentType)
	}
	img, err := png.Decode(bytes.NewReader(code.Image))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 500 || b.Dy() != 500 {
		t.Errorf("picture is %v, want 500x500", b)
	}
	want := []wechatfake.WXACode{{AppID: testApp, Scene: scene, Page: "pages/scan/index", EnvVersion: "release", Width: 500}}
	if got := srv.WXACodes(); !slices.Equal(got, want) {
		t.Fatalf("fake drew %+v, want %+v", got, want)
	}
	if s := code.String(); strings.Contains(s, string(code.Image[:8])) || !strings.Contains(s, "bytes") {
		t.Errorf("String() = %q dumps the picture", s)
	}
}

// TestWXACodeRequest pins the wire format: zero fields are left out so
// WeChat's defaults apply (an empty env_version would earn 40097).
func TestWXACodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  WXACodeRequest
		want string
	}{
		{"defaults", WXACodeRequest{Scene: "s"}, `{"scene":"s"}`},
		{"all", WXACodeRequest{Scene: "s", Page: "pages/scan/index", CheckPath: new(false), EnvVersion: "trial", Width: 280},
			`{"scene":"s","page":"pages/scan/index","check_path":false,"env_version":"trial","width":280}`},
		{"check_path true", WXACodeRequest{Scene: "s", CheckPath: new(true)}, `{"scene":"s","check_path":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gotPath, gotToken, gotBody, gotCT string
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotPath, gotToken, gotCT = r.Method+" "+r.URL.Path, r.URL.Query().Get("access_token"), r.Header.Get("Content-Type")
				b, _ := io.ReadAll(r.Body)
				gotBody = string(b)
				w.Header().Set("Content-Type", "image/jpeg")
				_, _ = w.Write(jpegBytes())
			}))
			defer ts.Close()
			c, _ := New(ts.URL)
			code, err := c.WXACodeUnlimited(context.Background(), "AT+/=", tc.req)
			if err != nil || code.ContentType != "image/jpeg" || !bytes.Equal(code.Image, jpegBytes()) {
				t.Fatalf("code = %v, %v", code, err)
			}
			if gotPath != "POST /wxa/getwxacodeunlimit" || gotToken != "AT+/=" || gotCT != "application/json" {
				t.Errorf("request %s token %q content type %q", gotPath, gotToken, gotCT)
			}
			if gotBody != tc.want {
				t.Errorf("body %s, want %s", gotBody, tc.want)
			}
		})
	}
}

// A scene WeChat would refuse never leaves the process.
func TestWXACodeInvalidScene(t *testing.T) {
	srv, c := setup(t)
	tok := token(t, c)
	for _, scene := range []string{"", strings.Repeat("a", 33), "a b", "a%20b", "票", "a\x00", `a"b`, "a<b", "a\\b"} {
		_, err := c.WXACodeUnlimited(context.Background(), tok, WXACodeRequest{Scene: scene})
		if !errors.Is(err, ErrInvalidScene) {
			t.Errorf("scene %q: err = %v, want ErrInvalidScene", scene, err)
		}
		if errors.Is(err, ErrUnavailable) {
			t.Errorf("scene %q: a caller's mistake is not ErrUnavailable", scene)
		}
	}
	if n := srv.Calls(wechattest.PathWXACode); n != 0 {
		t.Fatalf("calls = %d, want 0", n)
	}
}

func TestWXACodeErrcodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(s *wechattest.Server, tok string) string // returns the token to send
		req   WXACodeRequest
		want  int
		calls int
	}{
		{"unknown token", func(*wechattest.Server, string) string { return "12_unknown" },
			WXACodeRequest{Scene: "s"}, CodeInvalidToken, 1},
		{"expired token", func(s *wechattest.Server, tok string) string { s.ExpireToken(testApp); return tok },
			WXACodeRequest{Scene: "s"}, CodeTokenExpired, 1},
		{"unpublished page", nil, WXACodeRequest{Scene: "s", Page: "pages/new/index"}, CodeInvalidPage, 1},
		{"page with leading slash", nil, WXACodeRequest{Scene: "s", Page: "/pages/scan/index"}, CodeInvalidPage, 1},
		{"bad env_version", nil, WXACodeRequest{Scene: "s", EnvVersion: "beta"}, CodeInvalidArgs, 1},
		{"daily quota", func(s *wechattest.Server, tok string) string {
			s.FailNext(wechattest.PathWXACode, CodeDailyQuota)
			return tok
		},
			WXACodeRequest{Scene: "s"}, CodeDailyQuota, 1},
		{"busy twice", func(s *wechattest.Server, tok string) string {
			s.FailNext(wechattest.PathWXACode, CodeBusy)
			s.FailNext(wechattest.PathWXACode, CodeBusy)
			return tok
		}, WXACodeRequest{Scene: "s"}, CodeBusy, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := setup(t)
			tok := token(t, c)
			if tc.setup != nil {
				tok = tc.setup(srv, tok)
			}
			_, err := c.WXACodeUnlimited(context.Background(), tok, tc.req)
			ae := wantCode(t, err, tc.want)
			if ae.Op != "wxacode" {
				t.Errorf("op = %q", ae.Op)
			}
			if got := errors.Is(err, ErrUnavailable); got != (tc.want == CodeBusy) {
				t.Errorf("ErrUnavailable = %v", got)
			}
			noSecrets(t, err, tok)
			if n := srv.Calls(wechattest.PathWXACode); n != tc.calls {
				t.Errorf("calls = %d, want %d", n, tc.calls)
			}
			if len(srv.WXACodes()) != 0 {
				t.Errorf("a refused request drew a code")
			}
		})
	}
}

func TestWXACodeBusyRetried(t *testing.T) {
	srv, c := setup(t)
	srv.FailNext(wechattest.PathWXACode, CodeBusy)
	if _, err := c.WXACodeUnlimited(context.Background(), token(t, c), WXACodeRequest{Scene: "s"}); err != nil {
		t.Fatal(err)
	}
	if n, drawn := srv.Calls(wechattest.PathWXACode), len(srv.WXACodes()); n != 2 || drawn != 1 {
		t.Fatalf("calls = %d, codes = %d; want 2 and 1", n, drawn)
	}
}

func TestWXACodeCheckPathFalse(t *testing.T) {
	srv, c := setup(t)
	_, err := c.WXACodeUnlimited(context.Background(), token(t, c),
		WXACodeRequest{Scene: "s", Page: "pages/new/index", CheckPath: new(false), EnvVersion: "develop"})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.WXACodes(); len(got) != 1 || got[0].Page != "pages/new/index" || got[0].EnvVersion != "develop" {
		t.Fatalf("drawn %+v", got)
	}
}

// jpegBytes and pngBytes are the smallest bodies http.DetectContentType
// takes for a JPEG and a PNG.
func jpegBytes() []byte { return append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, 60)...) }
func pngBytes() []byte  { return append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 60)...) }

// TestWXACodeOddAnswers: what an answer is follows from its bytes, not only
// its header; the unusable ones are ErrUnavailable, never a picture.
func TestWXACodeOddAnswers(t *testing.T) {
	const tok = "the-access-token"
	for _, tc := range []struct {
		name, ctype string
		body        []byte
		wantType    string // success with this content type
		wantCode    int    // an *APIError
	}{
		{"jpeg", "image/jpeg", jpegBytes(), "image/jpeg", 0},
		{"png labelled jpeg", "image/jpeg", pngBytes(), "image/png", 0},
		{"png without header", "", pngBytes(), "image/png", 0},
		{"png as octet-stream", "application/octet-stream", pngBytes(), "image/png", 0},
		{"png of exactly 2 MiB", "image/png", append(pngBytes(), make([]byte, maxImage-len(pngBytes()))...), "image/png", 0},
		{"error labelled image", "image/jpeg", []byte(`{"errcode":40001,"errmsg":"invalid credential ` + tok + `"}`), "", CodeInvalidToken},
		{"error after whitespace", "image/png", []byte("\n {\"errcode\":41030,\"errmsg\":\"invalid page\"}"), "", CodeInvalidPage},
		{"error as text/plain", "text/plain", []byte(`{"errcode":40129,"errmsg":"invalid scene"}`), "", CodeInvalidScene},
		{"error as json", "application/json; encoding=utf-8", []byte(`{"errcode":45009,"errmsg":"reach max api daily quota limit"}`), "", CodeDailyQuota},
		{"unknown errcode", "application/json", []byte(`{"errcode":85096,"errmsg":"scancode_time not allowed"}`), "", 85096},
		{"json without errcode", "application/json", []byte(`{"errcode":0,"errmsg":"ok"}`), "", 0},
		{"json header, picture body", "application/json", pngBytes(), "", 0},
		{"html labelled image", "image/jpeg", []byte("<html><body>502 Bad Gateway</body></html>"), "", 0},
		{"gif", "image/gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), "", 0},
		{"empty", "image/jpeg", nil, "", 0},
		{"oversized", "image/png", append(pngBytes(), make([]byte, maxImage)...), "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				} else {
					w.Header()["Content-Type"] = nil // no sniffing by net/http either
				}
				_, _ = w.Write(tc.body)
			}))
			defer ts.Close()
			c, _ := New(ts.URL)
			code, err := c.WXACodeUnlimited(context.Background(), tok, WXACodeRequest{Scene: "s"})
			switch {
			case tc.wantType != "":
				if err != nil || code.ContentType != tc.wantType || !bytes.Equal(code.Image, tc.body) {
					t.Fatalf("code = %v, %v; want %s", code, err, tc.wantType)
				}
				return
			case tc.wantCode != 0:
				wantCode(t, err, tc.wantCode)
			default:
				var te *TransportError
				if !errors.As(err, &te) || !errors.Is(err, ErrUnavailable) {
					t.Fatalf("code = %v, err = %v; want a TransportError wrapping ErrUnavailable", code, err)
				}
			}
			if code.Image != nil {
				t.Errorf("a failure returned %d image bytes", len(code.Image))
			}
			noSecrets(t, err, tok)
		})
	}
}

func TestWXACodeRetriedAfterBusyAnswer(t *testing.T) {
	var n atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"errcode":-1,"errmsg":"system error"}`)
			return
		}
		w.Header().Set("Content-Type", "image/jpeg")
		_, _ = w.Write(jpegBytes())
	}))
	defer ts.Close()
	c, _ := New(ts.URL)
	if _, err := c.WXACodeUnlimited(context.Background(), "tok", WXACodeRequest{Scene: "s"}); err != nil || n.Load() != 2 {
		t.Fatalf("err = %v after %d requests; want success after 2", err, n.Load())
	}
}

func TestWXACodeRefusedConnectionRetried(t *testing.T) {
	d := &refusingDialer{refuse: 1}
	srv, c := setup(t, WithHTTPClient(d.client()))
	tok := token(t, c) // uses the refused dial and its retry
	if _, err := c.WXACodeUnlimited(context.Background(), tok, WXACodeRequest{Scene: "s"}); err != nil {
		t.Fatal(err)
	}
	if d.dials.Load() < 2 || srv.Calls(wechattest.PathWXACode) != 1 {
		t.Fatalf("dials = %d, calls = %d", d.dials.Load(), srv.Calls(wechattest.PathWXACode))
	}
}

func TestWXACodeObservedAndLogged(t *testing.T) {
	rec := &recorder{}
	var logs bytes.Buffer
	srv, c := setup(t, WithObserver(rec.observe), WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	tok := token(t, c)
	rec.take()
	ctx := context.Background()
	if _, err := c.WXACodeUnlimited(ctx, tok, WXACodeRequest{Scene: "s"}); err != nil {
		t.Fatal(err)
	}
	_, _ = c.WXACodeUnlimited(ctx, tok, WXACodeRequest{Scene: "s", Page: "pages/nope/index"})
	srv.FailNext(wechattest.PathWXACode, CodeInvalidArgs)
	_, _ = c.WXACodeUnlimited(ctx, tok, WXACodeRequest{Scene: "s"})
	if got, want := rec.take(), []string{"wxacode 0", "wxacode 41030", "wxacode 40097"}; !slices.Equal(got, want) {
		t.Fatalf("observed %q, want %q", got, want)
	}
	if strings.Contains(logs.String(), tok) || !strings.Contains(logs.String(), `"op":"wxacode"`) {
		t.Fatalf("logs %s: want op wxacode and no access token", logs.String())
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.SplitN(logs.Bytes(), []byte("\n"), 2)[0], &line); err != nil || line["errcode"] != float64(41030) {
		t.Fatalf("log line %v, %v", line, err)
	}
}

// FuzzWXACodeAnswer feeds arbitrary bodies and content types, as a 200
// answer, to WXACodeUnlimited. Properties: no panic; a failure is an
// *APIError or a *TransportError wrapping ErrUnavailable and holds no access
// token; a success is a JPEG or PNG by its bytes, and never a JSON object.
func FuzzWXACodeAnswer(f *testing.F) {
	for _, s := range []struct{ ctype, body string }{
		{"image/jpeg", string(jpegBytes())},
		{"image/png", string(pngBytes())},
		{"image/jpeg", `{"errcode":40001,"errmsg":"invalid credential ` + fuzzAccessToken + `"}`},
		{"application/json; encoding=utf-8", `{"errcode":-1,"errmsg":"system error"}`},
		{"text/plain", `{"errcode":0}`},
		{"application/json", string(pngBytes())},
		{"image/png", " \n{\"errcode\":41030}"},
		{"", "GIF89a"},
		{"image/jpeg", ""},
	} {
		f.Add(s.ctype, []byte(s.body))
	}
	var answer atomic.Pointer[[2]string]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a := answer.Load()
		w.Header()["Content-Type"] = []string{a[0]}
		_, _ = io.WriteString(w, a[1])
	}))
	f.Cleanup(srv.Close)
	c, err := New(srv.URL)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		answer.Store(&[2]string{ctype, string(body)})
		code, err := c.WXACodeUnlimited(context.Background(), fuzzAccessToken, WXACodeRequest{Scene: "s"})
		if checkFuzzErr(t, err, true, fuzzAccessToken) {
			sniffed := http.DetectContentType(code.Image)
			if code.ContentType != sniffed || (sniffed != "image/jpeg" && sniffed != "image/png") ||
				bytes.HasPrefix(bytes.TrimLeft(code.Image, " \t\r\n"), []byte("{")) {
				t.Fatalf("accepted %q as %s (sniffed %s)", code.Image, code.ContentType, sniffed)
			}
		}
	})
}
