package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// authCode is a code the authorization endpoint issued, with the PKCE
// verifier that redeems it. Codes live 10 minutes on the server.
type authCode struct{ code, verifier string }

// codePool hands each code out once, without a lock.
type codePool struct {
	codes []authCode
	next  atomic.Int64
}

func (p *codePool) take() (authCode, bool) {
	i := p.next.Add(1) - 1
	if i >= int64(len(p.codes)) {
		return authCode{}, false
	}
	return p.codes[i], true
}

// used is how many codes were handed out.
func (p *codePool) used() int { return int(min(p.next.Load(), int64(len(p.codes)))) }

// mintWorkers bounds the browsers minting codes in parallel.
const mintWorkers = 8

// mintCodes gets n codes through the real scan-to-login flow over HTTP.
// Each minting browser logs in once by scan (authorization request with
// PKCE S256, login page, the mini-program user's scan and approval,
// completion) and then gets its further codes through the session cookie
// that login left, as a returning website user would: the code is the
// same kind either way.
func (e *env) mintCodes(ctx context.Context, n int) ([]authCode, error) {
	var (
		mu      sync.Mutex
		codes   = make([]authCode, 0, n)
		left    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	left.Store(int64(n))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := range min(mintWorkers, n) {
		wg.Go(func() {
			b, err := e.newBrowser(ctx, fmt.Sprintf("%s-web-user-%d", e.prefix, w))
			for err == nil && left.Add(-1) >= 0 {
				var c authCode
				if c, err = b.code(ctx); err == nil {
					mu.Lock()
					codes = append(codes, c)
					mu.Unlock()
				}
			}
			if err != nil {
				errOnce.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, fmt.Errorf("minting authorization codes: %w", first)
	}
	return codes, nil
}

// browser is one website visitor: a cookie jar over the shared transport,
// and the mini-program user who approves its logins.
type browser struct {
	e         *env
	c         *http.Client
	userToken string
}

func (e *env) newBrowser(ctx context.Context, openID string) (*browser, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	t, err := e.login(ctx, openID, "openid")
	if err != nil {
		return nil, err
	}
	return &browser{e: e, userToken: t.AccessToken, c: &http.Client{Transport: e.transport, Jar: jar, Timeout: e.hc.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

func (b *browser) do(ctx context.Context, method, target string, form url.Values, bearer string) (*http.Response, string, error) {
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp, string(raw), err
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// code runs one authorization request to its redirect and returns the code.
func (b *browser) code(ctx context.Context) (authCode, error) {
	verifier := randomHex(32)
	sum := sha256.Sum256([]byte(verifier))
	state := randomHex(8)
	q := url.Values{
		"response_type": {"code"}, "client_id": {b.e.web.id}, "redirect_uri": {redirectURI},
		"scope": {"openid offline_access"}, "state": {state}, "nonce": {randomHex(8)},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	resp, body, err := b.do(ctx, http.MethodGet, b.e.issuer+"/oauth2/auth?"+q.Encode(), nil, "")
	if err != nil {
		return authCode{}, err
	}
	loc := resp.Header.Get("Location")
	if ticket, ok := strings.CutPrefix(loc, "/login?ticket="); ok && resp.StatusCode == http.StatusSeeOther {
		if resp, body, err = b.scanLogin(ctx, ticket); err != nil {
			return authCode{}, err
		}
	}
	code, err := codeFrom(resp, body, state)
	return authCode{code: code, verifier: verifier}, err
}

// scanLogin is the login page's part: read its CSRF token, let the
// mini-program user scan and approve, complete.
func (b *browser) scanLogin(ctx context.Context, ticket string) (*http.Response, string, error) {
	resp, body, err := b.do(ctx, http.MethodGet, b.e.issuer+"/login?ticket="+url.QueryEscape(ticket), nil, "")
	if err != nil {
		return nil, "", err
	}
	m := csrfField.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		return nil, "", fmt.Errorf("login page: HTTP %d without a csrf field: %s", resp.StatusCode, snippet([]byte(body)))
	}
	for _, step := range []string{"scan", "approve"} {
		resp, body, err := b.do(ctx, http.MethodPost, b.e.issuer+"/login/tickets/"+url.PathEscape(ticket)+"/"+step, nil, b.userToken)
		if err != nil {
			return nil, "", err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, "", fmt.Errorf("ticket %s: HTTP %d: %s", step, resp.StatusCode, snippet([]byte(body)))
		}
	}
	return b.do(ctx, http.MethodPost, b.e.issuer+"/login/complete", url.Values{"ticket": {ticket}, "csrf": {m[1]}}, "")
}

// codeFrom reads the code off the redirect to the website.
func codeFrom(resp *http.Response, body, state string) (string, error) {
	loc, err := url.Parse(resp.Header.Get("Location"))
	if (resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound) || err != nil ||
		!strings.HasPrefix(loc.String(), redirectURI+"?") {
		return "", fmt.Errorf("want a redirect to the website, got HTTP %d Location %q: %s",
			resp.StatusCode, resp.Header.Get("Location"), snippet([]byte(body)))
	}
	q := loc.Query()
	if q.Get("code") == "" || q.Get("state") != state {
		return "", fmt.Errorf("redirect to the website without a code or with the wrong state (error %q)", q.Get("error"))
	}
	return q.Get("code"), nil
}

// mintTimeout bounds minting, well inside the codes' 10-minute life.
const mintTimeout = 5 * time.Minute
