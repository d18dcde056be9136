package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

const (
	// DefaultChromium is where the Debian package chromium puts the browser.
	DefaultChromium = "/usr/bin/chromium"
	// ChromiumEnv names another browser binary (Chrome, headless-shell).
	ChromiumEnv = "WXIDP_TEST_CHROMIUM"

	// timeout bounds everything one browser does, so that a page that never
	// shows what a test waits for fails the test instead of hanging until
	// go test's -timeout kills every test at once.
	timeout = 60 * time.Second
	// deadlineMargin leaves room, before the test binary's own deadline, to
	// fail with a message and stop the browser.
	deadlineMargin = 5 * time.Second
	// closeTimeout bounds the graceful shutdown; the process is killed after.
	closeTimeout = 10 * time.Second
	// viewportWidth and viewportHeight are a laptop's screen: the login
	// page's layout must show the QR code without scrolling at this size.
	viewportWidth, viewportHeight = 1280, 900
	// pollInterval is how often WaitLocationPrefix looks at the URL.
	pollInterval = 50 * time.Millisecond
)

// Browser is one headless Chromium with one tab, owned by one test.
type Browser struct {
	t testing.TB
	// tab has no deadline: the first chromedp call binds the browser's life
	// to its context, and a browser killed by a deadline can no longer say
	// what page it was on. Calls use ctx.
	tab context.Context
	ctx context.Context

	mu       sync.Mutex
	console  []string
	finished bool // after cleanup, chromedp's goroutines must not call t.Logf
}

// New starts a headless Chromium for the test and stops it (and waits for
// it) when the test ends. It fails the test when the browser is missing or
// does not start.
func New(t testing.TB) *Browser {
	t.Helper()
	exe := os.Getenv(ChromiumEnv)
	if exe == "" {
		exe = DefaultChromium
	}
	if fi, err := os.Stat(exe); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("browsertest: no Chromium at %s (set $%s to use another browser): "+
			"install it with `apt-get install chromium` or scripts/ensure-chromium", exe, ChromiumEnv)
	}
	profile := t.TempDir() // registered first, so it is removed after the browser has stopped

	b := &Browser{t: t}
	out := &tailBuffer{max: 4 << 10}
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox, // Chromium refuses to run as root with its sandbox
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.DisableGPU,
		chromedp.WindowSize(viewportWidth, viewportHeight),
		// The test network is closed: no update checks, no sync, no QUIC
		// probes that would only time out and add noise to the log.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("force-color-profile", "srgb"), // screenshots keep pure black and white
		chromedp.Flag("lang", "en-US"),               // the default Accept-Language, whatever $LANG says
		chromedp.CombinedOutput(out),
	)
	tab, tabCancel := chromedp.NewContext(allocCtx,
		chromedp.WithListener(b.record),
		chromedp.WithLogf(b.logf),
		chromedp.WithErrorf(b.logf),
	)
	ctx, cancel := context.WithDeadline(tab, deadline(t))
	b.tab, b.ctx = tab, ctx
	t.Cleanup(func() {
		cancel()
		cctx, ccancel := context.WithTimeout(tab, closeTimeout)
		defer ccancel()
		// Graceful first, so that Chromium's helper processes exit before
		// t.TempDir removes the profile; the allocator then kills whatever
		// is left and waits for it.
		_ = chromedp.Cancel(cctx)
		tabCancel()
		allocCancel()
		b.mu.Lock()
		b.finished = true
		b.mu.Unlock()
	})

	// The first call starts the browser and opens the tab. It runs on tab:
	// chromedp ties the browser's life to the context of the first call, so
	// the deadline must stop a browser that hangs while starting, and only
	// then. The window size includes the browser's own toolbars even when
	// headless; the emulated viewport makes a screenshot exactly
	// viewportWidth x viewportHeight.
	stop := context.AfterFunc(ctx, tabCancel)
	err := chromedp.Do(tab, chromedp.EmulateViewport(viewportWidth, viewportHeight))
	stop()
	if err != nil {
		t.Fatalf("browsertest: starting %s: %v\n-- browser output (tail):\n%s", exe, err, out.String())
	}
	return b
}

// deadline is when every call on the browser gives up: timeout from now, or
// earlier when the test binary would otherwise be killed first.
func deadline(t testing.TB) time.Time {
	d := time.Now().Add(timeout)
	if td, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := td.Deadline(); ok && end.Add(-deadlineMargin).Before(d) {
			d = end.Add(-deadlineMargin)
		}
	}
	return d
}

// Navigate loads url and waits for its load event.
func (b *Browser) Navigate(url string) {
	b.t.Helper()
	b.do("navigate to "+url, chromedp.Navigate(url))
}

// WaitVisible waits until an element matching selector is visible.
func (b *Browser) WaitVisible(selector string) {
	b.t.Helper()
	b.do("wait for "+selector+" to be visible", chromedp.WaitVisible(chromedp.CSS(selector)))
}

// Text is the rendered text (innerText) of the first element matching
// selector, waiting until one exists.
func (b *Browser) Text(selector string) string {
	b.t.Helper()
	return run(b, "text of "+selector, chromedp.Text(chromedp.CSS(selector)))
}

// Click clicks the middle of the first element matching selector, once it
// is visible. It does not wait for a navigation the click starts: follow
// with WaitLocationPrefix or WaitVisible.
func (b *Browser) Click(selector string) {
	b.t.Helper()
	b.do("click "+selector, chromedp.Click(chromedp.CSS(selector)))
}

// Screenshot is a PNG of the whole viewport (1280x900 CSS pixels at scale
// 1), as painted.
func (b *Browser) Screenshot() []byte {
	b.t.Helper()
	return run(b, "screenshot", chromedp.CaptureScreenshot())
}

// ElementScreenshot is a PNG of the first element matching selector, once
// it is visible.
func (b *Browser) ElementScreenshot(selector string) []byte {
	b.t.Helper()
	return run(b, "screenshot of "+selector, chromedp.Screenshot(chromedp.CSS(selector)))
}

// Location is the URL the tab shows: the last committed navigation,
// including redirects the server or a script made.
func (b *Browser) Location() string {
	b.t.Helper()
	u, err := b.location(b.ctx)
	if err != nil {
		b.fatal("current URL", err)
	}
	return u
}

// WaitLocationPrefix waits until the tab's URL starts with prefix, as when a
// page redirects the user to a relying party's callback, and returns it.
func (b *Browser) WaitLocationPrefix(prefix string) string {
	b.t.Helper()
	var last string
	for {
		u, err := b.location(b.ctx)
		if err == nil {
			last = u
			if strings.HasPrefix(u, prefix) {
				return u
			}
		}
		select {
		case <-b.ctx.Done():
			b.fatal(fmt.Sprintf("wait for a URL starting with %q (last: %q)", prefix, last), b.ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// location asks the browser, not the page: a page's own scripts are gone
// in the middle of a navigation, the target's URL is not.
func (b *Browser) location(ctx context.Context) (string, error) {
	id := chromedp.FromContext(b.tab).Target.TargetID
	res, err := chromedp.CallBrowser(ctx, target.GetTargetInfo, target.GetTargetInfoParams{TargetID: id})
	if err != nil {
		return "", err
	}
	if res.TargetInfo == nil {
		return "", errors.New("browser returned no target info")
	}
	return res.TargetInfo.URL, nil
}

// Cookie is one cookie the browser holds, with the attributes a test asserts.
type Cookie struct {
	Name, Value, Domain, Path string
	HTTPOnly, Secure          bool
	// SameSite is "Strict", "Lax" or "None" as the Set-Cookie header said,
	// or "" when it said nothing (Chromium then treats the cookie as Lax).
	SameSite string
	// Session is true for a cookie without Expires or Max-Age.
	Session bool
	Expires time.Time // zero for a session cookie
}

// Cookies are all the cookies the browser holds, for every site it visited.
func (b *Browser) Cookies() []Cookie {
	b.t.Helper()
	res, err := chromedp.CallBrowser(b.ctx, storage.GetCookies, storage.GetCookiesParams{})
	if err != nil {
		b.fatal("cookies", err)
	}
	cs := make([]Cookie, 0, len(res.Cookies))
	for _, c := range res.Cookies {
		k := Cookie{
			Name: c.Name, Value: c.Value, Domain: c.Domain, Path: c.Path,
			HTTPOnly: c.HTTPOnly, Secure: c.Secure, SameSite: string(c.SameSite), Session: c.Session,
		}
		if !c.Session && c.Expires > 0 {
			k.Expires = time.UnixMilli(int64(c.Expires * 1000))
		}
		cs = append(cs, k)
	}
	return cs
}

// SetAcceptLanguage sets the languages the tab prefers, most preferred
// first, as a plain list such as "zh-CN,zh" or "en": every later request
// sends them as Accept-Language (Chromium adds the q-values itself:
// "zh-CN,zh;q=0.9"), and navigator.language(s) agree. The user agent stays
// the browser's own.
func (b *Browser) SetAcceptLanguage(lang string) {
	b.t.Helper()
	if strings.Contains(lang, ";") {
		// Chromium would send "zh;q=0.9;q=0.9", which no server parses.
		b.t.Fatalf("browsertest: SetAcceptLanguage(%q): give languages without q-values", lang)
	}
	v, err := chromedp.CallBrowser(b.ctx, browser.GetVersion, cdp.Empty{})
	if err == nil {
		_, err = chromedp.Call(b.ctx, emulation.SetUserAgentOverride,
			emulation.SetUserAgentOverrideParams{UserAgent: v.UserAgent, AcceptLanguage: lang})
	}
	if err != nil {
		b.fatal("set Accept-Language "+lang, err)
	}
}

// ConsoleErrors are the errors the tab reported so far, in order: console
// errors, uncaught exceptions, and browser log errors such as Content
// Security Policy violations and failed loads. Events reach the harness
// before the browser answers the command that caused them, so the errors of
// a page are here once Navigate (which waits for the load event) returns;
// a script that fails later needs a wait for its visible effect first.
func (b *Browser) ConsoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// record runs inside chromedp's read loop (chromedp.WithListener): it must
// be quick and must not call the browser.
func (b *Browser) record(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		parts := make([]string, 0, len(ev.Args))
		for _, a := range ev.Args {
			parts = append(parts, remoteText(a))
		}
		msg = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg = "exception: " + d.Text
		if d.Exception != nil {
			desc, _, _ := strings.Cut(d.Exception.Description, "\n")
			msg += " " + desc
		}
		if d.URL != "" {
			msg += fmt.Sprintf(" (%s:%d)", d.URL, d.LineNumber+1)
		}
	case *log.EventEntryAdded:
		e := ev.Entry
		if e == nil || e.Level != log.EntryLevelError {
			return
		}
		msg = string(e.Source) + ": " + e.Text
		if e.URL != "" && !strings.Contains(e.Text, e.URL) {
			msg += " (" + e.URL + ")"
		}
	default:
		return
	}
	b.mu.Lock()
	b.console = append(b.console, msg)
	b.mu.Unlock()
}

// remoteText is how DevTools would print one console argument.
func remoteText(o *runtime.RemoteObject) string {
	if o.Type == runtime.RemoteObjectTypeString {
		var s string
		if err := json.Unmarshal(o.Value, &s); err == nil {
			return s
		}
	}
	if o.Description != "" {
		return o.Description
	}
	if len(o.Value) > 0 {
		return string(o.Value)
	}
	return string(o.Type)
}

// logf sends chromedp's own messages to the test log while the test runs;
// its goroutines can outlive the test by a moment, and testing panics on a
// Logf after the test has finished.
func (b *Browser) logf(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.finished {
		b.t.Logf("chromedp: "+format, args...)
	}
}

// do runs actions and fails the test on the first error.
func (b *Browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.fatal(what, err)
	}
}

// run runs one action and fails the test on error. A method cannot have a
// type parameter, hence a function.
func run[T any](b *Browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		b.fatal(what, err)
	}
	return v
}

// fatal fails the test with what the tab showed, which is most often why a
// wait timed out (an error page, a message in a language not expected).
func (b *Browser) fatal(what string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, 2*time.Second)
	defer cancel()
	var sb strings.Builder
	fmt.Fprintf(&sb, "browsertest: %s: %v", what, err)
	if u, err := b.location(ctx); err == nil {
		fmt.Fprintf(&sb, "\n-- URL: %s", u)
	}
	if text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`)); err == nil {
		if len(text) > 500 {
			text = text[:500] + "…"
		}
		fmt.Fprintf(&sb, "\n-- page text:\n%s", text)
	}
	if errs := b.ConsoleErrors(); len(errs) > 0 {
		fmt.Fprintf(&sb, "\n-- console errors:\n%s", strings.Join(errs, "\n"))
	}
	b.t.Fatal(sb.String())
}

// tailBuffer keeps the last max bytes of the browser's output, for the
// failure message when it does not start.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
