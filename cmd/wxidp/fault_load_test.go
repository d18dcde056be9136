package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// Endpoints of the fault test's load, as recorded in its samples.
const (
	epClientCredentials = "token client_credentials"
	epLogin             = "token wechat-code"
	epRefresh           = "token refresh_token"
	epIntrospect        = "introspect"
	epRevokeToken       = "token client_credentials (to revoke)"
	epRevoke            = "revoke"
	epUserinfo          = "userinfo"
	epReadyz            = "readyz"
	epAdmin             = "admin GET /admin/clients"
)

const (
	// loadPace spaces each worker's requests: a steady load, not a flood
	// on two shared cores.
	loadPace = 50 * time.Millisecond
	// loadMaxRequests bounds each worker whatever the phases take.
	loadMaxRequests = 1000
	// Requests are never abandoned by the client: one given up on while the
	// server still works could commit what the test then counts as lost.
	// Latency is asserted from the samples instead.
	loadClientTimeout = 30 * time.Second
)

// sample is one request of the load.
type sample struct {
	endpoint   string
	start, end time.Duration // since the load began
	status     int
	oauthErr   string // "error" of a JSON body
	retryAfter string
	netErr     string
}

func (s sample) latency() time.Duration { return s.end - s.start }

// faultLoad is the steady mixed load of the fault test: one goroutine per
// endpoint, each recording every request and what it was granted. Workers
// never touch testing.T; the test reads the record once they are done.
type faultLoad struct {
	issuer, admin         string
	svcSecret, rvSecret   string
	rsSecret              string
	introspected, uiToken string   // valid for the whole run
	setupRefresh          []string // refresh tokens of the logins before the load
	wx                    *wechattest.Server
	client                *http.Client
	t0                    time.Time

	mu       sync.Mutex
	samples  []sample
	problems []string // broken promises seen by workers
	// What 200 answers granted.
	svcTokens []string       // access tokens of client_credentials for svc
	logins    []grantedLogin // wechat-code logins
	refreshed []string       // refresh tokens returned by refreshes
	revoked   []string       // access tokens whose revocation answered 200

	// chains are the refresh tokens each chain holds now; only the refresh
	// worker touches them until the load ends. A chain is dead ("") once
	// a refresh was refused.
	chains []string
}

type grantedLogin struct{ openid, accessToken, refreshToken string }

// run drives every worker until ctx ends and returns when all are done.
func (l *faultLoad) run(ctx context.Context) {
	workers := []func(int){
		l.clientCredentials, l.login, l.refresh, l.introspect, l.revoke, l.userinfo,
		func(int) { l.do(epReadyz, l.get(l.issuer+"/readyz", "")) },
		func(int) { l.do(epAdmin, l.get(l.admin+"/admin/clients", testAdminToken)) },
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			tick := time.NewTicker(loadPace)
			defer tick.Stop()
			for i := 0; i < loadMaxRequests && ctx.Err() == nil; i++ {
				w(i)
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()
}

func (l *faultLoad) clientCredentials(int) {
	s, body := l.do(epClientCredentials, l.form(l.issuer+"/oauth2/token", "svc", l.svcSecret,
		url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}))
	if s.status == http.StatusOK {
		l.record(&l.svcTokens, body["access_token"])
	}
}

// login signs in one of a few users, so that logins of one openid
// interleave with outages.
func (l *faultLoad) login(i int) {
	openid := fmt.Sprintf("o-load-%d", i%4)
	s, body := l.do(epLogin, l.form(l.issuer+"/oauth2/token", "", "", url.Values{
		"grant_type": {grants.WeChatCode}, "client_id": {"mp"},
		"code": {l.wx.Login("wxapp1", openid, "")}, "scope": {"openid offline_access"},
	}))
	if s.status == http.StatusOK {
		at, _ := body["access_token"].(string)
		rt, _ := body["refresh_token"].(string)
		l.mu.Lock()
		l.logins = append(l.logins, grantedLogin{openid, at, rt})
		l.mu.Unlock()
	}
}

// refresh rotates the chains in turn. A refresh answered 503 must not have
// rotated anything: the same token is tried again next time.
func (l *faultLoad) refresh(i int) {
	k := i % len(l.chains)
	rt := l.chains[k]
	if rt == "" {
		return
	}
	s, body := l.do(epRefresh, l.form(l.issuer+"/oauth2/token", "", "", url.Values{
		"grant_type": {"refresh_token"}, "client_id": {"mp"}, "refresh_token": {rt},
	}))
	switch s.status {
	case http.StatusOK:
		next, _ := body["refresh_token"].(string)
		l.chains[k] = next
		l.record(&l.refreshed, next)
	case http.StatusServiceUnavailable:
	default:
		l.chains[k] = ""
		l.problem("chain %d: refresh at %v answered %d %s; its token was valid (any earlier failure was a 503)", k, s.start, s.status, s.oauthErr)
	}
}

// introspect asks about a token valid for the whole run: "inactive" would
// be a lie.
func (l *faultLoad) introspect(int) {
	s, body := l.do(epIntrospect, l.form(l.issuer+"/oauth2/introspect", "rs", l.rsSecret, url.Values{"token": {l.introspected}}))
	if s.status == http.StatusOK && body["active"] != true {
		l.problem("introspection at %v called a valid token inactive", s.start)
	}
}

// revoke gets a token and revokes it until a revocation answers 200.
func (l *faultLoad) revoke(int) {
	s, body := l.do(epRevokeToken, l.form(l.issuer+"/oauth2/token", "rv", l.rvSecret,
		url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}))
	if s.status != http.StatusOK {
		return
	}
	at, _ := body["access_token"].(string)
	for range 20 {
		s, _ := l.do(epRevoke, l.form(l.issuer+"/oauth2/revoke", "rv", l.rvSecret, url.Values{"token": {at}}))
		if s.status == http.StatusOK {
			l.record(&l.revoked, at)
			return
		}
		if s.status != http.StatusServiceUnavailable {
			return // recorded; the check of samples reports it
		}
		time.Sleep(loadPace)
	}
}

func (l *faultLoad) userinfo(int) {
	l.do(epUserinfo, l.get(l.issuer+"/userinfo", l.uiToken))
}

func (l *faultLoad) form(target, user, pass string, form url.Values) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	return req
}

func (l *faultLoad) get(target, bearer string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return req
}

// do sends req, records the sample and returns it with the decoded JSON
// body (nil when there is none).
func (l *faultLoad) do(endpoint string, req *http.Request) (sample, map[string]any) {
	start := time.Now()
	s := sample{endpoint: endpoint, start: start.Sub(l.t0)}
	var body map[string]any
	resp, err := l.client.Do(req)
	if err != nil {
		s.netErr = err.Error()
	} else {
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			s.netErr = err.Error()
		}
		s.status, s.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
		if json.Unmarshal(raw, &body) == nil {
			s.oauthErr, _ = body["error"].(string)
		}
	}
	s.end = time.Since(l.t0)
	l.mu.Lock()
	l.samples = append(l.samples, s)
	l.mu.Unlock()
	return s, body
}

func (l *faultLoad) record(dst *[]string, token any) {
	tok, _ := token.(string)
	l.mu.Lock()
	defer l.mu.Unlock()
	*dst = append(*dst, tok)
}

func (l *faultLoad) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// firstOK returns the earliest end of a 200 of endpoint that started at or
// after since.
func (l *faultLoad) firstOK(endpoint string, since time.Duration) (end time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.samples {
		if s.endpoint == endpoint && s.status == http.StatusOK && s.start >= since && (!ok || s.end < end) {
			end, ok = s.end, true
		}
	}
	return end, ok
}

// snapshot copies the samples recorded so far.
func (l *faultLoad) snapshot() []sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sample(nil), l.samples...)
}
