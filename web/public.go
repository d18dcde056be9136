package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/provider"
)

// TokenEndpoint is what the public server needs from the provider.
type TokenEndpoint interface {
	Token(ctx context.Context, r *http.Request) (fosite.AccessRequester, fosite.AccessResponder, error)
	WriteAccessError(ctx context.Context, w http.ResponseWriter, ar fosite.AccessRequester, err error)
	WriteAccessResponse(ctx context.Context, w http.ResponseWriter, ar fosite.AccessRequester, resp fosite.AccessResponder)
}

// TokenLifecycle answers revocation (RFC 7009) and introspection (RFC 7662).
type TokenLifecycle interface {
	Revoke(ctx context.Context, r *http.Request) error
	WriteRevocationResponse(ctx context.Context, w http.ResponseWriter, err error)
	Introspect(ctx context.Context, r *http.Request) (*provider.Introspection, error)
}

// UserInfoSource answers /userinfo; it returns provider.ErrInvalidToken for
// tokens that do not authorize it.
type UserInfoSource interface {
	UserInfo(ctx context.Context, token string) (map[string]any, error)
}

// KeySet serves the published signing keys.
type KeySet interface {
	JWKS() (body []byte, etag string, maxAge time.Duration)
}

// Pinger reports whether storage is reachable.
type Pinger interface {
	Ping(ctx context.Context) error
}

// PublicConfig configures the public server.
type PublicConfig struct {
	Issuer     string
	GrantTypes []string
	Log        *slog.Logger
	Tokens     TokenEndpoint
	UserInfo   UserInfoSource
	Lifecycle  TokenLifecycle
	RateLimit  RateLimit
	Metrics    *Metrics
	// TrustedProxies are the load balancers whose X-Forwarded-For is
	// believed when telling clients apart.
	TrustedProxies []*net.IPNet
	Keys           KeySet
	Store          Pinger
	// CORS says which browser origins each client registered (cors.go);
	// nil lets no origin read the token, revocation and userinfo answers.
	CORS CORSOrigins
	// Login serves scan-to-login's browser side (the authorization
	// endpoint, /login pages, logout) and Tickets its mini-program side;
	// nil leaves them out (and discovery says so). CSRFKey keys the login
	// forms' CSRF tokens (32 bytes).
	Login   LoginFlow
	Tickets TicketAPI
	CSRFKey []byte
	// Vault is the session_key vault (/wechat/decrypt, verify-signature,
	// session); nil leaves it out.
	Vault VaultAPI
	// Account is the self-service account (PATCH and DELETE /account);
	// nil leaves it out. Audit records account deletions.
	Account AccountAPI
	Audit   *audit.Recorder
	// Draining, when set and true, makes /readyz answer 503 at once: the
	// process is shutting down (SIGTERM) and wants no new traffic.
	Draining func() bool
}

// DiscoveryMaxAge is how long the discovery document may be cached, in
// seconds. The JWKS lifetime comes with the keys: rotation publishes a key at
// least that long before it signs (docs/keys.md).
const DiscoveryMaxAge = 3600

type public struct {
	PublicConfig
	discovery []byte
}

// NewPublic builds the public listener's handler.
func NewPublic(cfg PublicConfig) (*echo.Echo, error) {
	p := &public{PublicConfig: cfg}
	var err error
	if p.discovery, err = json.Marshal(p.discoveryDoc()); err != nil {
		return nil, err
	}
	e := newEcho(cfg.Log, isHTTPS(cfg.Issuer), cfg.Metrics.middleware("public"), cfg.TrustedProxies...)
	limits := cfg.RateLimit.middleware()
	e.POST("/oauth2/token", p.token, limits...)
	e.POST("/oauth2/revoke", p.revoke, limits...)
	e.POST("/oauth2/introspect", p.introspect, limits...)
	getAndHead(e, "/userinfo", p.userinfo, limits...)
	e.POST("/userinfo", p.userinfo, limits...)
	getAndHead(e, "/.well-known/jwks.json", p.jwks)
	getAndHead(e, "/.well-known/openid-configuration", p.openidConfiguration)
	getAndHead(e, "/healthz", p.healthz)
	getAndHead(e, "/readyz", p.readyz)
	if cfg.Login != nil {
		registerLogin(e, &login{flow: cfg.Login, issuer: cfg.Issuer, log: cfg.Log, limits: cfg.RateLimit,
			cookies: cookies{secure: isHTTPS(cfg.Issuer), csrfKey: cfg.CSRFKey}}, limits)
	}
	if cfg.Tickets != nil {
		registerTicketAPI(e, &ticketAPI{api: cfg.Tickets, rl: cfg.RateLimit}, limits)
	}
	if cfg.Vault != nil {
		registerVault(e, &vaultAPI{api: cfg.Vault, rl: cfg.RateLimit}, limits)
	}
	if cfg.Account != nil {
		registerAccount(e, &accountAPI{api: cfg.Account, rl: cfg.RateLimit, recorder: cfg.Audit}, limits)
	}
	registerCORS(e, cfg.CORS, cfg.Log)
	return e, nil
}

func (p *public) token(c echo.Context) error {
	ctx := c.Request().Context()
	if err := singleParams(c.Request()); err != nil {
		p.Metrics.observeToken(c.Request(), err)
		return p.accessError(c, "token endpoint", nil, err)
	}
	ar, resp, err := p.Tokens.Token(ctx, c.Request())
	p.Metrics.observeToken(c.Request(), err)
	if err != nil {
		return p.accessError(c, "token endpoint", ar, err)
	}
	p.Tokens.WriteAccessResponse(ctx, c.Response(), ar, resp)
	return nil
}

func (p *public) revoke(c echo.Context) error {
	ctx := c.Request().Context()
	if err := singleParams(c.Request()); err != nil {
		return p.accessError(c, "revocation endpoint", nil, err)
	}
	err := p.Lifecycle.Revoke(ctx, c.Request())
	if err != nil && !p.oauthError(c, "revocation endpoint", err) {
		return nil
	}
	p.Lifecycle.WriteRevocationResponse(ctx, c.Response(), err)
	return nil
}

func (p *public) introspect(c echo.Context) error {
	ctx := c.Request().Context()
	if err := singleParams(c.Request()); err != nil {
		return p.accessError(c, "introspection endpoint", nil, err)
	}
	res, err := p.Lifecycle.Introspect(ctx, c.Request())
	if err != nil {
		return p.accessError(c, "introspection endpoint", nil, err)
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, res)
}

// maxMultipartMemory is what fosite gives ParseMultipartForm.
const maxMultipartMemory = 1 << 20

// singleParams refuses a request that repeats a parameter, in the query,
// in the body or across both (RFC 6749 §3.1): fosite would silently use
// the first value, and which value wins must not be left to parsers that
// may disagree (a proxy or WAF that checked the other one). Multipart
// bodies are parsed here as fosite would parse them, so every parameter
// fosite sees is checked.
func singleParams(r *http.Request) error {
	if err := r.ParseMultipartForm(maxMultipartMemory); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		return fosite.ErrInvalidRequest.WithHint("The request body is malformed.")
	}
	for name, values := range r.Form {
		if len(values) > 1 {
			if !plainName(name) { // only a short, plain name is worth echoing
				return fosite.ErrInvalidRequest.WithHint("A request parameter is repeated; each may appear only once.")
			}
			return fosite.ErrInvalidRequest.WithHintf("The '%s' parameter is repeated; each may appear only once.", name)
		}
	}
	return nil
}

// accessError answers err in RFC 6749 §5.2 shape, unless the client is gone.
func (p *public) accessError(c echo.Context, where string, ar fosite.AccessRequester, err error) error {
	if p.oauthError(c, where, err) {
		p.Tokens.WriteAccessError(c.Request().Context(), c.Response(), ar, err)
	}
	return nil
}

// oauthError prepares an RFC 6749 error answer: it sets the headers the
// answer needs and logs server-side failures with their cause (client
// errors only reach the access log). It reports false when the client has
// gone: there is nothing to write, and a failure caused by the canceled
// request is no server error (accessLog records the request as 499).
func (p *public) oauthError(c echo.Context, where string, err error) bool {
	if clientGone(c) {
		// Nothing is written; the status is what the metrics record.
		c.Response().Status = StatusClientClosedRequest
		return false
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	switch rfc.CodeField {
	case http.StatusUnauthorized:
		// RFC 6749 §5.2: a failed client authentication names the scheme.
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Basic realm="wxidp", charset="UTF-8"`)
	case http.StatusTooManyRequests:
		// A rate limit's own wait, else WeChat's quota (45011): per minute.
		c.Response().Header().Set(retryAfter, retryAfterOf(err, "60"))
	case http.StatusServiceUnavailable:
		// temporarily_unavailable: WeChat busy or unreachable, storage down.
		c.Response().Header().Set(retryAfter, retryAfterUnavailable)
	}
	if rfc.CodeField >= http.StatusInternalServerError {
		p.Log.ErrorContext(c.Request().Context(), where, "request_id", requestID(c), "err", rfc.Error(), "cause", rfc.Cause())
	}
	return true
}

// userinfo answers RFC 6750 errors itself: the challenge must name
// invalid_token so clients know to refresh.
func (p *public) userinfo(c echo.Context) error {
	var claims map[string]any
	err := p.RateLimit.bearer(c, func(tok string) (map[string]any, error) {
		var err error
		claims, err = p.UserInfo.UserInfo(c.Request().Context(), tok)
		return claims, err
	})
	if errors.Is(err, provider.ErrInvalidToken) {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
		return newAPIError(http.StatusUnauthorized, "invalid_token", "The access token is missing, invalid, expired or revoked.")
	}
	if errors.Is(err, provider.ErrInsufficientScope) {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="insufficient_scope", scope="openid"`)
		return newAPIError(http.StatusForbidden, "insufficient_scope", "The access token lacks the openid scope.")
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, claims)
}

func (p *public) jwks(c echo.Context) error {
	body, etag, maxAge := p.Keys.JWKS()
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "public, max-age="+strconv.Itoa(int(maxAge.Seconds())))
	h.Set("ETag", etag)
	if c.Request().Header.Get("If-None-Match") == etag {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, "application/jwk-set+json", body)
}

func (p *public) openidConfiguration(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "public, max-age="+strconv.Itoa(DiscoveryMaxAge))
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, p.discovery)
}

// discoveryDoc lists only what is implemented.
func (p *public) discoveryDoc() map[string]any {
	d := map[string]any{
		"issuer": p.Issuer,
		// OpenID Connect Discovery requires this list; it is empty when
		// no authorization endpoint is served.
		"response_types_supported":                      []string{},
		"token_endpoint":                                p.Issuer + "/oauth2/token",
		"jwks_uri":                                      p.Issuer + "/.well-known/jwks.json",
		"userinfo_endpoint":                             p.Issuer + "/userinfo",
		"revocation_endpoint":                           p.Issuer + "/oauth2/revoke",
		"introspection_endpoint":                        p.Issuer + "/oauth2/introspect",
		"revocation_endpoint_auth_methods_supported":    []string{"none", "client_secret_basic", "client_secret_post"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic"},
		"grant_types_supported":                         p.GrantTypes,
		"token_endpoint_auth_methods_supported":         []string{"none", "client_secret_basic", "client_secret_post"},
		"scopes_supported":                              []string{"openid", "offline_access", "profile", "phone"},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         []string{"RS256"},
		"claims_supported":                              []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "at_hash", "phone_number", "phone_number_verified"},
	}
	if p.Vault != nil {
		d["scopes_supported"] = append(d["scopes_supported"].([]string), "wechat_data")
	}
	if p.Login != nil {
		d["authorization_endpoint"] = p.Issuer + provider.AuthorizePath
		d["end_session_endpoint"] = p.Issuer + provider.LogoutPath
		d["response_types_supported"] = []string{"code"}
		d["response_modes_supported"] = []string{"query"}
		d["code_challenge_methods_supported"] = []string{"S256"}
		d["prompt_values_supported"] = []string{"none", "login", "consent", "select_account"}
	}
	return d
}

func (p *public) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// ReadyTimeout bounds /readyz whatever the database does: a load balancer's
// probe must get an answer, and a hung database means not ready.
const ReadyTimeout = 1500 * time.Millisecond

func (p *public) readyz(c echo.Context) error {
	if p.Draining != nil && p.Draining() {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "draining"})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), ReadyTimeout)
	defer cancel()
	if err := p.Store.Ping(ctx); err != nil {
		c.Response().Header().Set("Retry-After", retryAfterUnavailable)
		p.Log.WarnContext(ctx, "readiness: storage unreachable", "err", err)
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}
