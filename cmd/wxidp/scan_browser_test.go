package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/wxidp/wxidp/internal/browsertest"
)

// relyingParty is a website built on golang.org/x/oauth2 and go-oidc, as a
// business would build one: /start sends the browser to the authorization
// endpoint with state, nonce and PKCE; /cb checks the state, trades the
// code and verifies the ID token, then greets the user by sub.
type relyingParty struct {
	URL  string
	conf *oauth2.Config
	ver  *oidc.IDTokenVerifier

	mu      sync.Mutex
	pending map[string][2]string // state -> nonce, verifier
	subs    chan string
}

func newRelyingParty(t *testing.T, issuer string, register func(redirect string)) *relyingParty {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rp := &relyingParty{URL: "http://" + ln.Addr().String(), pending: map[string][2]string{}, subs: make(chan string, 4)}
	register(rp.URL + "/cb")
	op, err := oidc.NewProvider(context.Background(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	rp.conf = &oauth2.Config{ClientID: "web", ClientSecret: strings.Repeat("w", 40), RedirectURL: rp.URL + "/cb",
		Endpoint: op.Endpoint(), Scopes: []string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess}}
	rp.ver = op.Verifier(&oidc.Config{ClientID: "web"})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /start", rp.start)
	mux.HandleFunc("GET /cb", rp.callback)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rp
}

func rpRandom() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (rp *relyingParty) start(w http.ResponseWriter, r *http.Request) {
	state, nonce, verifier := rpRandom(), rpRandom(), oauth2.GenerateVerifier()
	rp.mu.Lock()
	rp.pending[state] = [2]string{nonce, verifier}
	rp.mu.Unlock()
	http.Redirect(w, r, rp.conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

func (rp *relyingParty) callback(w http.ResponseWriter, r *http.Request) {
	rp.mu.Lock()
	p, ok := rp.pending[r.URL.Query().Get("state")]
	delete(rp.pending, r.URL.Query().Get("state"))
	rp.mu.Unlock()
	if !ok {
		http.Error(w, "unknown state", http.StatusBadRequest)
		return
	}
	if e := r.URL.Query().Get("error"); e != "" {
		http.Error(w, "login failed: "+e, http.StatusForbidden)
		return
	}
	tok, err := rp.conf.Exchange(r.Context(), r.URL.Query().Get("code"), oauth2.VerifierOption(p[1]))
	if err != nil {
		http.Error(w, "exchange: "+err.Error(), http.StatusBadGateway)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := rp.ver.Verify(r.Context(), raw)
	if err != nil || idt.Nonce != p[0] || tok.RefreshToken == "" {
		http.Error(w, fmt.Sprintf("id token: %v (nonce ok: %v)", err, err == nil && idt.Nonce == p[0]), http.StatusBadGateway)
		return
	}
	rp.subs <- idt.Subject
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html><title>RP</title><p id="sub">%s</p>`, html.EscapeString(idt.Subject))
}

// TestScanLoginInBrowser: headless Chromium starts at the website, lands
// on the login page, and the test reads the ticket from a screenshot of
// the QR code (the fake WeChat's mini-program code is a QR code of the
// scene); the mini-program logs in over HTTP with the WeChat-code grant,
// scans and approves; the page follows without reloading and the website
// ends up holding verified tokens for the mini-program's sub. The page
// runs under its CSP with no console error, in Chinese when asked, and
// offers a new code once the first expires.
func TestScanLoginInBrowser(t *testing.T) {
	t.Parallel()
	var rp *relyingParty
	e := newScanEnv(t, map[string]any{"wechat_appid": "wxscanapp", "wechat_app_secret": "secret-of-wxscanapp",
		"wechat_login_page": "pages/scan/index"})
	rp = newRelyingParty(t, e.issuer, func(redirect string) {
		status, body := e.adminJSON(t, "GET", "/admin/clients/web", testAdminToken, nil)
		if status != http.StatusOK {
			t.Fatalf("get web client: %d %v", status, body)
		}
		body["redirect_uris"] = []string{redirect}
		for _, k := range []string{"client_id", "client_id_issued_at", "created_at", "updated_at", "wechat_app_secret_set"} {
			delete(body, k)
		}
		if status, body := e.adminJSON(t, "PUT", "/admin/clients/web", testAdminToken, body); status != http.StatusOK {
			t.Fatalf("register the website's redirect_uri: %d %v", status, body)
		}
	})
	userTok, sub := e.user(t, "o-browser")
	br := browsertest.New(t)
	br.SetAcceptLanguage("zh-CN,zh")

	ticketOnScreen := func() string {
		t.Helper()
		br.WaitVisible("#qr")
		// The picture may still be loading when the element shows: look
		// again a few times.
		var err error
		for range 5 {
			var content string
			if content, err = browsertest.DecodeQR(br.Screenshot()); err == nil {
				return content
			}
		}
		t.Fatalf("no QR code in the screenshot: %v", err)
		return ""
	}
	br.Navigate(rp.URL + "/start")
	if !strings.HasPrefix(br.Location(), e.issuer+"/login?ticket=") {
		t.Fatalf("the website sent the browser to %q", br.Location())
	}
	if h := br.Text("h1"); h != "微信扫码登录" {
		t.Errorf("heading %q, want the Chinese page", h)
	}
	if name := br.Text("#client-name"); name != "Example Web" {
		t.Errorf("client name %q", name)
	}
	first := ticketOnScreen()
	if !strings.HasSuffix(br.Location(), "="+first) {
		t.Fatalf("the QR code holds %q, the page is %q", first, br.Location())
	}
	// The first code expires: the page says so and offers a new one.
	e.clock.advance(3 * time.Minute)
	br.WaitVisible(`#status[data-state="expired"]`)
	// Back to real time before the new code: fosite checks auth_time
	// against its own clock.
	e.clock.advance(-3 * time.Minute)
	br.Click("#new-code")
	br.WaitVisible(`#status[data-state="waiting"]`)
	ticket := ticketOnScreen()
	if ticket == first {
		t.Fatal("the new code is the old one")
	}

	if status, body := e.mini(t, http.MethodPost, ticket, "scan", userTok); status != http.StatusOK {
		t.Fatalf("scan: %d %v", status, body)
	}
	br.WaitVisible(`#status[data-state="scanned"]`)
	if status, body := e.mini(t, http.MethodPost, ticket, "approve", userTok); status != http.StatusOK {
		t.Fatalf("approve: %d %v", status, body)
	}
	br.WaitLocationPrefix(rp.URL + "/cb")
	br.WaitVisible("#sub")
	if got := br.Text("#sub"); got != sub {
		t.Fatalf("the website greets %q, the mini-program's sub is %q", got, sub)
	}
	select {
	case got := <-rp.subs:
		if got != sub {
			t.Fatalf("website sub %q, want %q", got, sub)
		}
	default:
		t.Fatal("the website verified no ID token")
	}
	for _, c := range br.Cookies() {
		if strings.HasPrefix(c.Name, "wxidp_") && (!c.HTTPOnly || c.SameSite != "Lax") {
			t.Errorf("cookie %s: HttpOnly %v SameSite %q", c.Name, c.HTTPOnly, c.SameSite)
		}
	}
	var errs []string
	for _, m := range br.ConsoleErrors() {
		if !strings.Contains(m, "/favicon.ico") { // neither site has one
			errs = append(errs, m)
		}
	}
	if len(errs) > 0 {
		t.Errorf("console errors (CSP?): %q", errs)
	}
	// Logged in here now: the website's next login needs no scan.
	br.Navigate(rp.URL + "/start")
	br.WaitLocationPrefix(rp.URL + "/cb")
	br.WaitVisible("#sub")
	if got := br.Text("#sub"); got != sub {
		t.Fatalf("second login greets %q", got)
	}
	if n := len(e.wx.WXACodes()); n != 2 {
		t.Errorf("%d mini-program codes fetched, want 2 (one per ticket)", n)
	}
}
