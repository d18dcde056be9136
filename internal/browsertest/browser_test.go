package browsertest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	qrcode "github.com/skip2/go-qrcode"
)

// csp is as strict as the login pages will be: no inline script or style,
// scripts, images, styles and fetches from the page's own origin only.
const csp = "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'"

// page is a login-like page: the QR image is static, #status is hidden until
// the external script has fetched /status and written the answer.
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>login</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script></head>
<body><img id="qr" src="/qr.png" width="256" height="256" alt="QR code">
<p id="status" hidden>pending</p>
<a id="next" href="/next">next</a></body></html>`

const appJS = `fetch('/status').then(r => r.json()).then(j => {
	const p = document.getElementById('status');
	p.textContent = j.state;
	p.hidden = false;
});`

// inlinePage has an inline script, which the CSP blocks.
const inlinePage = `<!doctype html>
<html><head><meta charset="utf-8"><title>inline</title><link rel="icon" href="data:,"></head>
<body><p id="out">untouched</p>
<script>document.getElementById('out').textContent = 'inline ran';</script></body></html>`

// randomText is what a QR code or a status carries: a test that passes with
// a constant could be reading a cached or hard-coded value.
func randomText() string {
	return "wxidp-" + rand.Text()
}

// newSite serves the pages above, with the CSP on every response.
func newSite(t *testing.T, qrText, state string) *httptest.Server {
	t.Helper()
	qrPNG, err := qrcode.Encode(qrText, qrcode.Medium, 256)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	serve := func(path, contentType, body string) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", csp)
			w.Header().Set("Content-Type", contentType)
			fmt.Fprint(w, body)
		})
	}
	serve("/{$}", "text/html; charset=utf-8", page)
	serve("/inline", "text/html; charset=utf-8", inlinePage)
	serve("/app.js", "text/javascript", appJS)
	serve("/app.css", "text/css", "body { background: #fff; margin: 40px; }")
	serve("/status", "application/json", fmt.Sprintf(`{"state":%q}`, state))
	serve("/qr.png", "image/png", string(qrPNG))
	serve("/next", "text/html; charset=utf-8", `<!doctype html><link rel="icon" href="data:,"><p id="here">next page</p>`)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestScriptRunsUnderCSPAndScreenshotQRDecodes(t *testing.T) {
	qrText, state := randomText(), randomText()
	srv := newSite(t, qrText, state)
	b := New(t)

	b.Navigate(srv.URL + "/")
	b.WaitVisible("#status")
	if got := b.Text("#status"); got != state {
		t.Fatalf("#status = %q, want %q (the script's fetch result)", got, state)
	}

	shot := b.Screenshot()
	cfg, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if cfg.Width != 1280 || cfg.Height != 900 {
		t.Errorf("screenshot is %dx%d, want the 1280x900 viewport", cfg.Width, cfg.Height)
	}
	if got, err := DecodeQR(shot); err != nil || got != qrText {
		t.Fatalf("QR in the screenshot = %q, %v; want %q", got, err, qrText)
	}
	if got, err := DecodeQR(b.ElementScreenshot("#qr")); err != nil || got != qrText {
		t.Fatalf("QR in the element screenshot = %q, %v; want %q", got, err, qrText)
	}

	if got := b.Location(); got != srv.URL+"/" {
		t.Errorf("Location() = %q, want %q", got, srv.URL+"/")
	}
	if errs := b.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("console errors on a page that keeps its CSP: %q", errs)
	}

	b.Click("#next")
	if got := b.WaitLocationPrefix(srv.URL + "/next"); got != srv.URL+"/next" {
		t.Errorf("WaitLocationPrefix = %q", got)
	}
	if got := b.Text("#here"); got != "next page" {
		t.Errorf("after the click #here = %q", got)
	}
}

// Without this, an empty ConsoleErrors would prove nothing.
func TestConsoleErrorsReportCSPViolation(t *testing.T) {
	srv := newSite(t, "unused", "unused")
	b := New(t)

	b.Navigate(srv.URL + "/inline")
	if got := b.Text("#out"); got != "untouched" {
		t.Fatalf("#out = %q: the inline script ran despite the CSP", got)
	}
	errs := b.ConsoleErrors()
	if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, "Content Security Policy") }) {
		t.Fatalf("ConsoleErrors() = %q, want a Content Security Policy violation", errs)
	}
	t.Logf("reported: %q", errs)
}

func TestConsoleErrorsReportExceptionsAndConsoleError(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><link rel="icon" href="data:,"><p id="p">x</p><script src="/bad.js"></script>`)
	})
	mux.HandleFunc("GET /bad.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, `console.error("boom", 42); null.field;`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b := New(t)

	b.Navigate(srv.URL + "/")
	errs := strings.Join(b.ConsoleErrors(), "\n")
	for _, want := range []string{"console.error: boom 42", "exception: Uncaught TypeError"} {
		if !strings.Contains(errs, want) {
			t.Errorf("ConsoleErrors() = %q, want one containing %q", errs, want)
		}
	}
}

func TestSetAcceptLanguage(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		fmt.Fprintf(w, `<!doctype html><link rel="icon" href="data:,"><p id="lang">%s</p>`, r.Header.Get("Accept-Language"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b := New(t)

	b.Navigate(srv.URL + "/")
	if got := b.Text("#lang"); !strings.HasPrefix(got, "en") {
		t.Errorf("default Accept-Language = %q, want English", got)
	}
	for _, c := range []struct{ langs, header string }{
		{"zh-CN,zh", "zh-CN,zh;q=0.9"},
		{"en", "en"},
	} {
		b.SetAcceptLanguage(c.langs)
		b.Navigate(srv.URL + "/")
		if got := b.Text("#lang"); got != c.header {
			t.Errorf("after SetAcceptLanguage(%q) the server got Accept-Language %q, want %q", c.langs, got, c.header)
		}
	}
}

// A login page sets its cookie and a script sends the user on to a relying
// party on another origin, as the scan-to-login page does once approved.
func TestCookiesAndScriptRedirect(t *testing.T) {
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><link rel="icon" href="data:,"><p id="code">%s</p>`, r.URL.Query().Get("code"))
	}))
	defer rp.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s1", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.SetCookie(w, &http.Cookie{Name: "pref", Value: "p1", Path: "/", MaxAge: 3600})
		// Chromium counts http://127.0.0.1 as a secure origin, so a plain
		// httptest server can set Secure and __Host- cookies.
		http.SetCookie(w, &http.Cookie{Name: "__Host-login", Value: "l1", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		w.Header().Set("Content-Security-Policy", csp)
		fmt.Fprint(w, `<!doctype html><link rel="icon" href="data:,"><script src="/go.js"></script>`)
	})
	mux.HandleFunc("GET /go.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprintf(w, `setTimeout(() => location.assign(%q), 200);`, rp.URL+"/callback?code=c1")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b := New(t)

	b.Navigate(srv.URL + "/login")
	if got := b.WaitLocationPrefix(rp.URL + "/callback"); got != rp.URL+"/callback?code=c1" {
		t.Errorf("WaitLocationPrefix = %q", got)
	}
	if got := b.Text("#code"); got != "c1" {
		t.Errorf("relying party got code %q", got)
	}

	byName := map[string]Cookie{}
	for _, c := range b.Cookies() {
		byName[c.Name] = c
	}
	sid, ok := byName["sid"]
	if !ok || sid.Value != "s1" || !sid.HTTPOnly || sid.Secure || sid.SameSite != "Lax" || !sid.Session || sid.Path != "/" {
		t.Errorf("sid cookie = %+v (found %v), want HttpOnly, SameSite=Lax, session, not Secure", sid, ok)
	}
	host, ok := byName["__Host-login"]
	if !ok || !host.Secure || !host.HTTPOnly || host.SameSite != "Strict" {
		t.Errorf("__Host-login cookie = %+v (found %v), want Secure, HttpOnly, SameSite=Strict", host, ok)
	}
	pref, ok := byName["pref"]
	if !ok || pref.HTTPOnly || pref.SameSite != "" || pref.Session ||
		pref.Expires.Before(time.Now().Add(59*time.Minute)) || pref.Expires.After(time.Now().Add(61*time.Minute)) {
		t.Errorf("pref cookie = %+v (found %v), want readable by script, no SameSite, expiring in an hour", pref, ok)
	}
}

func TestDecodeQRFindsSmallCodeAnywhere(t *testing.T) {
	// One of these texts' codes zxing's finder-pattern search misreads,
	// borderless and off-centre (DecodeQR then reads it as a pure barcode);
	// the random one is any other.
	for _, text := range []string{"wxidp-DV7OR7IQRFPZ3XGLKLB6AI5QOI", randomText()} {
		decodeSmallCode(t, text)
	}
	if _, err := DecodeQR(bytes.Repeat([]byte{0}, 10)); err == nil {
		t.Error("DecodeQR accepted bytes that are no PNG")
	}
	blank := new(bytes.Buffer)
	if err := png.Encode(blank, image.NewGray(image.Rect(0, 0, 100, 100))); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeQR(blank.Bytes()); err == nil {
		t.Error("DecodeQR found a code in a blank image")
	}
}

// decodeSmallCode checks that DecodeQR reads text's code at 120 pixels,
// borderless, alone and off-centre in a larger white image.
func decodeSmallCode(t *testing.T, text string) {
	t.Helper()
	code, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		t.Fatal(err)
	}
	code.DisableBorder = true // DecodeQR must supply the quiet zone itself
	small, err := code.PNG(120)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeQR(small); err != nil || got != text {
		t.Fatalf("borderless code of %q: %q, %v", text, got, err)
	}

	img, err := png.Decode(bytes.NewReader(small))
	if err != nil {
		t.Fatal(err)
	}
	canvas := image.NewGray(image.Rect(0, 0, 800, 600))
	for i := range canvas.Pix {
		canvas.Pix[i] = 0xff
	}
	at := image.Pt(530, 310)
	for y := range img.Bounds().Dy() {
		for x := range img.Bounds().Dx() {
			canvas.Set(at.X+x, at.Y+y, img.At(x, y))
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, canvas); err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeQR(buf.Bytes()); err != nil || got != text {
		t.Fatalf("code of %q off-centre in a larger image: %q, %v", text, got, err)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalMessage runs f with a fatalRecorder and returns what it failed with.
func fatalMessage(t *testing.T, f func(tb testing.TB)) string {
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(rec)
		rec.msg = "no failure"
	}()
	<-done
	return rec.msg
}

func TestNewFailsWithInstallHintWhenChromiumIsMissing(t *testing.T) {
	t.Setenv(ChromiumEnv, t.TempDir()+"/no-such-chromium")
	msg := fatalMessage(t, func(tb testing.TB) { New(tb) })
	for _, want := range []string{"no-such-chromium", "apt-get install chromium", "scripts/ensure-chromium"} {
		if !strings.Contains(msg, want) {
			t.Errorf("New without a browser: %q, want it to mention %q", msg, want)
		}
	}
}

func TestNewFailsWithBrowserOutputWhenChromiumDoesNotStart(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "chromium")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'fake chromium: cannot open display' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ChromiumEnv, fake)
	msg := fatalMessage(t, func(tb testing.TB) { New(tb) })
	for _, want := range []string{"starting " + fake, "fake chromium: cannot open display"} {
		if !strings.Contains(msg, want) {
			t.Errorf("New with a browser that exits: %q, want it to mention %q", msg, want)
		}
	}
}

func TestSetAcceptLanguageRejectsQValues(t *testing.T) {
	msg := fatalMessage(t, func(tb testing.TB) { (&Browser{t: tb}).SetAcceptLanguage("zh-CN,zh;q=0.9") })
	if !strings.Contains(msg, "without q-values") {
		t.Errorf("SetAcceptLanguage with q-values: %q, want a failure", msg)
	}
}
