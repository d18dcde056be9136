package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultBaseURL is the real WeChat API (WXIDP_WECHAT_API_BASE's default).
const DefaultBaseURL = "https://api.weixin.qq.com"

// DefaultTimeout bounds one method call, its single retry included.
const DefaultTimeout = 5 * time.Second

// maxBody bounds what we read from WeChat: real answers are a few hundred
// bytes, and a misbehaving proxy must not make us buffer without limit.
const maxBody = 1 << 20

// Client calls the WeChat API. It is safe for concurrent use and holds no
// per-app state: app secrets and access tokens are passed to each call.
type Client struct {
	base    string // scheme://host[/prefix], no trailing slash
	hc      *http.Client
	timeout time.Duration
	log     *slog.Logger
	observe Observer // nil: none
	// traced wraps the transport in spans (WithTracerProvider); nil: none.
	traced func(http.RoundTripper) http.RoundTripper
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient replaces the HTTP client. Redirects are never followed
// whatever its CheckRedirect says, so a request URL holding the app secret is
// never sent to another host.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithTimeout bounds each method call (default 5 s), retry included. Zero or
// less leaves only the caller's context and the HTTP client's own limits.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// WithLogger sets where failures and retries are logged (default: nowhere).
// Only the op name, appid and errcode are ever logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.log = l
		}
	}
}

// New returns a client of the WeChat API at baseURL (DefaultBaseURL when
// empty). baseURL may carry a path prefix, for a forward proxy.
func New(baseURL string, opts ...Option) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("wechat: base URL %q must be http(s)://host[/path]", baseURL)
	}
	c := &Client{
		base:    strings.TrimSuffix(u.String(), "/"),
		hc:      defaultHTTPClient(),
		timeout: DefaultTimeout,
		log:     slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(c)
	}
	hc := *c.hc // a copy: never change the caller's client
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if c.traced != nil {
		hc.Transport = c.traced(hc.Transport)
	}
	c.hc = &hc
	return c, nil
}

// maxIdlePerHost is how many idle connections to one WeChat host are kept.
const maxIdlePerHost = 128

func defaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// An idle connection the server is closing at the moment we reuse it fails
	// our request, and we may not resend it (see call). Dropping idle
	// connections well before typical server keep-alive limits makes that rare.
	tr.IdleConnTimeout = 30 * time.Second
	// Logins arrive many at a time; Go's default of 2 idle connections per
	// host would close most connections after each burst and pay a TCP and
	// TLS handshake for the next login (about 8 % of the server's CPU under
	// load, TestConnectionsReusedUnderConcurrency).
	tr.MaxIdleConnsPerHost = maxIdlePerHost
	tr.MaxIdleConns = 2 * maxIdlePerHost
	return &http.Client{Transport: tr}
}

// call describes one WeChat API request.
type call struct {
	op      string
	appID   string // for logs only; empty when unknown (phone_number)
	method  string
	path    string
	query   url.Values
	body    any      // JSON-encoded for POST
	secrets []string // values scrubbed from any error text
	// binary, when set, takes every 200 answer that is not JSON (wxacode's
	// image) instead of the JSON decoding into out; a JSON answer without a
	// non-zero errcode is then malformed. maxBody (default maxBody) bounds it.
	binary  func(data []byte) error
	maxBody int64
}

// status is the part of every WeChat answer that reports failure.
type status struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// do runs cl and decodes a successful answer into out.
//
// It retries at most once, and only when resending cannot make WeChat act
// twice: errcode -1 (WeChat says it was busy and did nothing) or a connection
// that could not be opened (nothing was sent). A timeout, a reset connection
// or any other answer is returned as is: WeChat may have consumed the
// single-use code, and a second request would only fail with 40163.
func (c *Client) do(ctx context.Context, cl call, out any) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var body []byte
	if cl.body != nil {
		var err error
		if body, err = json.Marshal(cl.body); err != nil {
			return fmt.Errorf("wechat %s: encode request: %w", cl.op, err)
		}
	}
	err := c.timedOnce(ctx, cl, body, out)
	if err != nil && retryable(ctx, err) {
		c.log.LogAttrs(ctx, slog.LevelWarn, "wechat call retried", logAttrs(cl, err)...)
		err = c.timedOnce(ctx, cl, body, out)
	}
	if err != nil {
		c.log.LogAttrs(ctx, logLevel(err), "wechat call failed", logAttrs(cl, err)...)
	}
	return err
}

// once sends one request. Every error it returns is an *APIError or a
// *TransportError, neither of which holds the URL.
func (c *Client) once(ctx context.Context, cl call, body []byte, out any) error {
	target := c.base + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, target, rd)
	if err != nil {
		return transportError(cl.op, err, cl.secrets)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	} else {
		// net/http silently resends a bodiless GET when a reused keep-alive
		// connection breaks before the first response byte, although the
		// server may have read and processed it (for code2session: consumed
		// the code). A body it cannot rewind (no GetBody) marks the request
		// non-replayable; being empty, it puts nothing on the wire.
		req.Body = emptyOnce{}
	}
	req.Header.Set("Accept", "application/json")

	resp, err := c.hc.Do(req)
	if err != nil {
		te := transportError(cl.op, err, cl.secrets)
		te.beforeSend = dialFailed(err)
		return te
	}
	defer resp.Body.Close()
	// WeChat answers refusals with 200 and an errcode; anything else is a
	// gateway or proxy speaking, and its body is not WeChat's JSON.
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) // lets the connection be reused
		return statusError(cl.op, resp.StatusCode)
	}
	// Content-Type is not trusted: jscode2session answers JSON as text/plain.
	limit := int64(maxBody)
	if cl.maxBody > 0 {
		limit = cl.maxBody
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return transportError(cl.op, err, cl.secrets)
	}
	if int64(len(data)) > limit {
		return malformed(cl.op)
	}
	if cl.binary != nil && !isJSONAnswer(resp.Header.Get("Content-Type"), data) {
		return cl.binary(data)
	}
	var st status
	if err := json.Unmarshal(data, &st); err != nil {
		return malformed(cl.op)
	}
	if st.ErrCode != 0 {
		return &APIError{Op: cl.op, Code: st.ErrCode, Msg: redact(st.ErrMsg, cl.secrets)}
	}
	if cl.binary != nil {
		return malformed(cl.op)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return malformed(cl.op)
	}
	return nil
}

// emptyOnce is an empty request body without GetBody; see once.
type emptyOnce struct{}

func (emptyOnce) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyOnce) Close() error             { return nil }

// retryable reports whether resending is both useful and harmless.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code == CodeBusy
	}
	var te *TransportError
	return errors.As(err, &te) && te.beforeSend
}

// dialFailed reports a failure to open the connection (refused, unreachable,
// DNS): the request never left this process. A dial timeout is excluded: the
// caller's time budget is what ran out, not a retry's worth.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && !op.Timeout() &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// logAttrs is everything a log line about a call may hold: never a secret,
// js_code, session_key, access_token or phone code.
func logAttrs(cl call, err error) []slog.Attr {
	attrs := []slog.Attr{slog.String("op", cl.op)}
	if cl.appID != "" {
		attrs = append(attrs, slog.String("appid", cl.appID))
	}
	var ae *APIError
	if errors.As(err, &ae) {
		attrs = append(attrs, slog.Int("errcode", ae.Code))
	}
	return attrs
}

// logLevel keeps ordinary user-side failures (a stale or reused code, a user
// WeChat blocks, a caller that gave up) out of the warnings operators watch.
func logLevel(err error) slog.Level {
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case CodeInvalidCode, CodeCodeUsed, CodeHighRisk:
			return slog.LevelInfo
		}
	}
	if errors.Is(err, context.Canceled) {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
