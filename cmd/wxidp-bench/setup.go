package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat/wechatfake"
)

// env is the server under test as the bench sees it: its URLs, one HTTP
// client over one keep-alive transport, the fake WeChat and the clients
// this run registered.
type env struct {
	issuer, admin, adminToken string
	hc                        *http.Client
	transport                 *http.Transport
	wx                        *wechatfake.Fake
	wxURL                     string
	log                       io.Writer

	prefix string // unique per run: client ids, appid, openids
	appID  string
	cc     cred   // confidential client of the client_credentials grant
	mp     string // public mini-program client (WeChat-code grant)
	web    cred   // website of the authorization code grant
	rs     cred   // resource server that introspects
	// authCodes is how many codes the authcode scenario mints this run.
	authCodes int
	// created lists the clients to delete at the end, in creation order.
	created []string
}

type cred struct{ id, secret string }

// redirectURI is the website's; nothing listens there, the bench only
// reads the code off the redirect.
const redirectURI = "https://bench.invalid/cb"

func newEnv(issuer, admin, adminToken string, concurrency int, timeout time.Duration, wx *wechatfake.Fake, wxURL string, log io.Writer) *env {
	t := &http.Transport{
		Proxy:               nil, // measure the server, not a proxy in the environment
		MaxIdleConns:        concurrency * 2,
		MaxIdleConnsPerHost: concurrency * 2, // the bench's own setup calls ride along
		IdleConnTimeout:     90 * time.Second,
		// Like wrk: no gzip negotiation, so both see the same bytes.
		DisableCompression: true,
	}
	return &env{
		issuer: strings.TrimRight(issuer, "/"), admin: strings.TrimRight(admin, "/"), adminToken: adminToken,
		transport: t,
		hc: &http.Client{Transport: t, Timeout: timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		wx: wx, wxURL: wxURL, log: log,
		prefix: "bench-" + randomHex(4),
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return hex.EncodeToString(b)
}

// adminJSON calls the admin API and decodes its JSON answer into out (may
// be nil); any status but want is an error carrying the answer.
func (e *env) adminJSON(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.admin+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+e.adminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	status, raw, err := e.send(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status != want {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, status, snippet(raw))
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// send does req and reads the whole body, so the connection is reused.
func (e *env) send(req *http.Request) (int, []byte, error) {
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

func snippet(b []byte) string {
	const limit = 500
	s := strings.TrimSpace(string(b))
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

// register creates a client and remembers to delete it.
func (e *env) register(ctx context.Context, md map[string]any) (string, error) {
	var resp struct {
		ClientSecret string `json:"client_secret"`
	}
	if err := e.adminJSON(ctx, http.MethodPost, "/admin/clients", md, http.StatusCreated, &resp); err != nil {
		return "", fmt.Errorf("register client %s: %w", md["client_id"], err)
	}
	e.created = append(e.created, md["client_id"].(string))
	return resp.ClientSecret, nil
}

// registerClients creates the four clients of the run under fresh ids and
// a fresh WeChat app in the fake.
func (e *env) registerClients(ctx context.Context) error {
	e.appID = "wx" + strings.ReplaceAll(e.prefix, "-", "")
	appSecret := randomHex(16)
	e.wx.AddApp(e.appID, appSecret)
	e.cc.id, e.mp, e.web.id, e.rs.id = e.prefix+"-cc", e.prefix+"-mp", e.prefix+"-web", e.prefix+"-rs"
	var err error
	if e.cc.secret, err = e.register(ctx, map[string]any{"client_id": e.cc.id, "client_name": "wxidp-bench service", "scope": "read"}); err != nil {
		return err
	}
	if _, err = e.register(ctx, map[string]any{"client_id": e.mp, "client_name": "wxidp-bench mini-program",
		"token_endpoint_auth_method": "none", "scope": "openid offline_access profile",
		"wechat_appid": e.appID, "wechat_app_secret": appSecret}); err != nil {
		return err
	}
	if e.web.secret, err = e.register(ctx, map[string]any{"client_id": e.web.id, "client_name": "wxidp-bench website",
		"grant_types": []string{grants.AuthorizationCode, grants.RefreshToken}, "scope": "openid offline_access profile",
		"redirect_uris": []string{redirectURI}}); err != nil {
		return err
	}
	e.rs.secret, err = e.register(ctx, map[string]any{"client_id": e.rs.id, "client_name": "wxidp-bench resource server", "scope": "introspect"})
	return err
}

// deleteClients removes what registerClients made; it runs after an
// interrupt too, so it takes its own deadline.
func (e *env) deleteClients() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, id := range e.created {
		if err := e.adminJSON(ctx, http.MethodDelete, "/admin/clients/"+url.PathEscape(id), nil, http.StatusNoContent, nil); err != nil {
			errs = append(errs, err)
		}
	}
	e.created = nil
	return errors.Join(errs...)
}

// tokens is a token endpoint answer.
type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// postForm posts form to a public endpoint, with basic auth when c is set.
func (e *env) postForm(ctx context.Context, path string, form url.Values, c *cred) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.issuer+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c != nil {
		req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	}
	return e.send(req)
}

// login is a mini-program user's WeChat-code grant, outside the measured
// window (setup, or repairing a broken refresh chain).
func (e *env) login(ctx context.Context, openID, scope string) (tokens, error) {
	calls := e.wx.Calls(wechatfake.PathCode2Session)
	code := e.wx.Login(e.appID, openID, "")
	status, raw, err := e.postForm(ctx, "/oauth2/token", url.Values{"grant_type": {grants.WeChatCode},
		"client_id": {e.mp}, "code": {code}, "scope": {scope}}, nil)
	if err != nil {
		return tokens{}, fmt.Errorf("WeChat-code login: %w", err)
	}
	if status != http.StatusOK {
		err := fmt.Errorf("WeChat-code login: HTTP %d: %s", status, snippet(raw))
		if e.wx.Calls(wechatfake.PathCode2Session) == calls {
			err = fmt.Errorf("%w\n(the server never called the fake WeChat: start it with WXIDP_WECHAT_API_BASE=%s)", err, e.wxURL)
		}
		return tokens{}, err
	}
	var t tokens
	if err := json.Unmarshal(raw, &t); err != nil {
		return tokens{}, fmt.Errorf("WeChat-code login: %w", err)
	}
	return t, nil
}
