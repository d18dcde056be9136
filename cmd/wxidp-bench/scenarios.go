package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/wxidp/wxidp/provider/grants"
)

// scenario is one kind of request the bench repeats.
type scenario struct {
	name string
	// prepare does the scenario's setup (not measured) and returns one
	// doer per worker.
	prepare func(ctx context.Context, e *env, workers int) ([]doer, *codePool, error)
}

// doer is one worker's request loop. next readies the next request
// outside the timed region (false: no more work, the scenario ends early);
// do sends it and classifies the answer.
type doer interface {
	next(ctx context.Context) bool
	do(ctx context.Context) outcome
}

// outcome of one request: class is "" on success, else the error class
// ("503", "transport", "inactive"), with the answer's body.
type outcome struct {
	class string
	body  []byte
}

// Scenario names, as --scenario takes them.
const (
	scClientCredentials = "client_credentials"
	scWeChatCode        = "wechat-code"
	scRefresh           = "refresh"
	scAuthCode          = "authcode"
	scIntrospection     = "introspection"
	scJWKS              = "jwks"
	scUserinfo          = "userinfo"
)

func scenarios() []scenario {
	return []scenario{
		{scClientCredentials, prepareClientCredentials},
		{scWeChatCode, prepareWeChatCode},
		{scRefresh, prepareRefresh},
		{scAuthCode, prepareAuthCode},
		{scIntrospection, prepareIntrospection},
		{scJWKS, prepareJWKS},
		{scUserinfo, prepareUserinfo},
	}
}

// selectScenarios resolves --scenario values (repeatable, comma lists,
// "all") to scenarios in the canonical order.
func selectScenarios(names []string) ([]scenario, error) {
	all := scenarios()
	want := map[string]bool{}
	for _, n := range names {
		for _, part := range strings.Split(n, ",") {
			if part = strings.TrimSpace(part); part != "" {
				want[part] = true
			}
		}
	}
	if len(want) == 0 || want["all"] {
		return all, nil
	}
	var out []scenario
	for _, s := range all {
		if want[s.name] {
			out = append(out, s)
			delete(want, s.name)
		}
	}
	if len(want) > 0 {
		unknown := make([]string, 0, len(want))
		for n := range want {
			unknown = append(unknown, n)
		}
		slices.Sort(unknown)
		known := make([]string, len(all))
		for i, s := range all {
			known[i] = s.name
		}
		return nil, fmt.Errorf("unknown scenario %s (known: all, %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return out, nil
}

// request is one worker's reusable request: a fixed method, URL and
// headers, sent over the shared client, the answer read into a reused
// buffer.
type request struct {
	e      *env
	method string
	target string
	header http.Header
	buf    bytes.Buffer
}

func (e *env) request(method, path string, header http.Header) *request {
	return &request{e: e, method: method, target: e.issuer + path, header: header}
}

func basic(c cred) http.Header {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	return http.Header{"Authorization": r.Header["Authorization"]}
}

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// send sends the request with body (a form, or none when empty) and
// leaves the answer in r.buf.
func (r *request) send(ctx context.Context, body string) outcome {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.target, rd)
	if err != nil {
		return outcome{class: "request", body: []byte(err.Error())}
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header["Content-Type"] = formType
	}
	r.buf.Reset()
	resp, err := r.e.hc.Do(req)
	if err != nil {
		return transportError(err)
	}
	_, err = r.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return transportError(err)
	}
	if resp.StatusCode/100 != 2 {
		return outcome{class: strconv.Itoa(resp.StatusCode), body: bytes.Clone(r.buf.Bytes())}
	}
	return outcome{}
}

var formType = []string{"application/x-www-form-urlencoded"}

func transportError(err error) outcome {
	class := "transport"
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
		class = "timeout"
	}
	return outcome{class: class, body: []byte(err.Error())}
}

// fixed repeats one request.
type fixed struct {
	r    *request
	body string
}

func (fixed) next(context.Context) bool        { return true }
func (f fixed) do(ctx context.Context) outcome { return f.r.send(ctx, f.body) }

func each(workers int, mk func(w int) doer) []doer {
	ds := make([]doer, workers)
	for w := range ds {
		ds[w] = mk(w)
	}
	return ds
}

func prepareClientCredentials(_ context.Context, e *env, workers int) ([]doer, *codePool, error) {
	body := url.Values{"grant_type": {grants.ClientCredentials}, "scope": {"read"}}.Encode()
	return each(workers, func(int) doer {
		return fixed{e.request(http.MethodPost, "/oauth2/token", basic(e.cc)), body}
	}), nil, nil
}

func prepareJWKS(_ context.Context, e *env, workers int) ([]doer, *codePool, error) {
	return each(workers, func(int) doer {
		return fixed{r: e.request(http.MethodGet, "/.well-known/jwks.json", nil)}
	}), nil, nil
}

// prepareIntrospection asks, as a resource server, about a user's valid
// access token; an answer of "active": false is an error too.
func prepareIntrospection(ctx context.Context, e *env, workers int) ([]doer, *codePool, error) {
	t, err := e.login(ctx, e.prefix+"-introspected", "openid")
	if err != nil {
		return nil, nil, err
	}
	body := url.Values{"token": {t.AccessToken}}.Encode()
	return each(workers, func(int) doer {
		return introspect{fixed{e.request(http.MethodPost, "/oauth2/introspect", basic(e.rs)), body}}
	}), nil, nil
}

type introspect struct{ fixed }

var activeTrue = []byte(`"active":true`)

func (i introspect) do(ctx context.Context) outcome {
	o := i.r.send(ctx, i.body)
	if o.class == "" && !bytes.Contains(i.r.buf.Bytes(), activeTrue) {
		return outcome{class: "inactive", body: bytes.Clone(i.r.buf.Bytes())}
	}
	return o
}

// prepareUserinfo gives each worker its own user, as many users would.
func prepareUserinfo(ctx context.Context, e *env, workers int) ([]doer, *codePool, error) {
	ds := make([]doer, workers)
	for w := range ds {
		t, err := e.login(ctx, fmt.Sprintf("%s-ui-%d", e.prefix, w), "openid")
		if err != nil {
			return nil, nil, err
		}
		ds[w] = fixed{r: e.request(http.MethodGet, "/userinfo", bearer(t.AccessToken))}
	}
	return ds, nil, nil
}

// wechatCode is a returning mini-program user's login: a fresh wx.login
// code from the fake each time, tokens with an ID and a refresh token.
type wechatCode struct {
	r      *request
	e      *env
	openID string
	body   string
}

func prepareWeChatCode(_ context.Context, e *env, workers int) ([]doer, *codePool, error) {
	return each(workers, func(w int) doer {
		return &wechatCode{r: e.request(http.MethodPost, "/oauth2/token", nil), e: e,
			openID: fmt.Sprintf("%s-wx-%d", e.prefix, w)}
	}), nil, nil
}

func (c *wechatCode) next(context.Context) bool {
	c.body = url.Values{"grant_type": {grants.WeChatCode}, "client_id": {c.e.mp},
		"code": {c.e.wx.Login(c.e.appID, c.openID, "")}, "scope": {"openid offline_access"}}.Encode()
	return true
}

func (c *wechatCode) do(ctx context.Context) outcome { return c.r.send(ctx, c.body) }

// refresh follows one rotating refresh chain per worker: each answer's
// refresh token is the next request's. A broken chain (an error) starts
// over with a new login before the next, unmeasured.
type refresh struct {
	r      *request
	e      *env
	openID string
	token  string
}

func prepareRefresh(ctx context.Context, e *env, workers int) ([]doer, *codePool, error) {
	ds := make([]doer, workers)
	for w := range ds {
		d := &refresh{r: e.request(http.MethodPost, "/oauth2/token", nil), e: e, openID: fmt.Sprintf("%s-rf-%d", e.prefix, w)}
		t, err := e.login(ctx, d.openID, "openid offline_access")
		if err != nil {
			return nil, nil, err
		}
		if d.token = t.RefreshToken; d.token == "" {
			return nil, nil, errors.New("the WeChat-code login with offline_access returned no refresh token")
		}
		ds[w] = d
	}
	return ds, nil, nil
}

func (f *refresh) next(ctx context.Context) bool {
	if f.token != "" {
		return true
	}
	t, err := f.e.login(ctx, f.openID, "openid offline_access")
	if err != nil || t.RefreshToken == "" {
		// Keep the loop going: the request with no token fails and is
		// counted, and the next call tries again.
		return ctx.Err() == nil
	}
	f.token = t.RefreshToken
	return true
}

func (f *refresh) do(ctx context.Context) outcome {
	o := f.r.send(ctx, url.Values{"grant_type": {grants.RefreshToken}, "client_id": {f.e.mp}, "refresh_token": {f.token}}.Encode())
	f.token = ""
	if o.class != "" {
		return o
	}
	var t tokens
	if err := json.Unmarshal(f.r.buf.Bytes(), &t); err != nil || t.RefreshToken == "" {
		return outcome{class: "no refresh token", body: bytes.Clone(f.r.buf.Bytes())}
	}
	f.token = t.RefreshToken
	return o
}

// exchange redeems one pre-minted authorization code per request.
type exchange struct {
	r    *request
	pool *codePool
	body string
}

func prepareAuthCode(ctx context.Context, e *env, workers int) ([]doer, *codePool, error) {
	ctx, cancel := context.WithTimeout(ctx, mintTimeout)
	defer cancel()
	codes, err := e.mintCodes(ctx, e.authCodes)
	if err != nil {
		return nil, nil, err
	}
	pool := &codePool{codes: codes}
	return each(workers, func(int) doer {
		return &exchange{r: e.request(http.MethodPost, "/oauth2/token", basic(e.web)), pool: pool}
	}), pool, nil
}

func (x *exchange) next(context.Context) bool {
	c, ok := x.pool.take()
	if ok {
		x.body = url.Values{"grant_type": {grants.AuthorizationCode}, "code": {c.code},
			"redirect_uri": {redirectURI}, "code_verifier": {c.verifier}}.Encode()
	}
	return ok
}

func (x *exchange) do(ctx context.Context) outcome { return x.r.send(ctx, x.body) }
