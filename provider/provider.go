package provider

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/provider/apptoken"
	"github.com/wxidp/wxidp/provider/authcode"
	"github.com/wxidp/wxidp/provider/refresh"
	"github.com/wxidp/wxidp/provider/scan"
	"github.com/wxidp/wxidp/storage"
)

// Config holds what the provider needs to know beyond its collaborators.
type Config struct {
	Issuer          string
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	IDTokenTTL      time.Duration
	// GlobalSecret keys fosite's HMAC tokens (refresh tokens, codes); at
	// least 32 bytes.
	GlobalSecret []byte
	// RotatedGlobalSecrets still verify HMAC tokens minted under them (they
	// mint none), so rotating WXIDP_SECRETS logs nobody out; each at least
	// 32 bytes.
	RotatedGlobalSecrets [][]byte
	// SessionMaxAge is the absolute lifetime of a login's token chain
	// (0: DefaultSessionMaxAge); a client may register a shorter one.
	SessionMaxAge time.Duration
	// Login sets scan-to-login's lifetimes.
	Login LoginConfig
}

// Store is the storage the provider composes.
type Store interface {
	storage.FositeStore
	storage.UserStore
	storage.WeChatCodeStore
	storage.WeChatTokenStore
	storage.LoginStore
	AccountStore
}

// Deps are the provider's collaborators.
type Deps struct {
	Store  Store
	Signer jwt.Signer // signs and verifies every JWT
	Hasher fosite.Hasher
	WeChat WeChatAPI
	Cipher Cipher
	Log    *slog.Logger
	// Audit records security events (refresh-token reuse, WeChat risk
	// refusals); nil records nothing.
	Audit *audit.Recorder
	// Limits throttle client authentication and issuance; nil limits nothing.
	Limits *Limits
	// WXACode draws mini-program codes for scan-to-login; nil shows plain
	// QR codes (dev mode).
	WXACode scan.WXACodeAPI
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Provider is wxidp's OAuth2 engine.
type Provider struct {
	oauth   fosite.OAuth2Provider
	cfg     Config
	users   storage.UserStore
	account AccountStore
	clients fosite.ClientManager
	audit   *audit.Recorder
	limits  *Limits
	// accessTokens verifies an access token's signature and expiry alone
	// (userinfo tells a token we signed from a forged one).
	accessTokens accessTokenValidator
	// signer decodes ID token hints at logout.
	signer jwt.Signer
	// Scan-to-login (login.go).
	store    Store
	logins   storage.LoginStore
	login    LoginConfig
	pictures *scan.Pictures
	now      func() time.Time
	// grant is the WeChat-code grant, whose WeChat client, cipher and
	// token cache the session_key vault uses too (vault.go).
	grant *wechatGrant
}

// ErrConfig reports an unusable provider configuration.
var ErrConfig = errors.New("provider: invalid configuration")

// TokenPath is the token endpoint's path on the public listener.
const TokenPath = "/oauth2/token"

// New composes fosite.
func New(cfg Config, d Deps) (*Provider, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if len(cfg.GlobalSecret) < 32 {
		// fosite would only fail at the first issuance; fail at start-up.
		return nil, errors.Join(ErrConfig, errors.New("global secret must be at least 32 bytes"))
	}
	for _, s := range cfg.RotatedGlobalSecrets {
		// fosite stops at a short rotated secret instead of trying the next.
		if len(s) < 32 {
			return nil, errors.Join(ErrConfig, errors.New("rotated global secrets must be at least 32 bytes"))
		}
	}
	if cfg.Issuer == "" || cfg.AccessTokenTTL <= 0 || cfg.RefreshTokenTTL <= 0 || cfg.IDTokenTTL <= 0 {
		return nil, errors.Join(ErrConfig, errors.New("issuer and positive token lifetimes are required"))
	}
	// Every field fosite would otherwise fill lazily is set here, once.
	fc := &fosite.Config{
		AccessTokenLifespan:        cfg.AccessTokenTTL,
		RefreshTokenLifespan:       cfg.RefreshTokenTTL,
		IDTokenLifespan:            cfg.IDTokenTTL,
		AuthorizeCodeLifespan:      10 * time.Minute,
		AccessTokenIssuer:          cfg.Issuer,
		IDTokenIssuer:              cfg.Issuer,
		TokenURL:                   cfg.Issuer + TokenPath,
		GlobalSecret:               cfg.GlobalSecret,
		RotatedGlobalSecrets:       cfg.RotatedGlobalSecrets,
		ScopeStrategy:              fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:   fosite.ExactAudienceMatchingStrategy,
		JWTScopeClaimKey:           jwt.JWTScopeFieldString,
		ClientSecretsHasher:        d.Hasher,
		SendDebugMessagesToClients: false,
		MinParameterEntropy:        fosite.MinParameterEntropy,
		RefreshTokenScopes:         []string{"offline_access"},
		// Scan-to-login: PKCE with S256 only, required of public clients
		// (ParseAuthorize checks the same before anyone scans).
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
	}
	if cfg.SessionMaxAge <= 0 {
		cfg.SessionMaxAge = DefaultSessionMaxAge
	}
	core := &oauth2.DefaultJWTStrategy{
		Signer:          d.Signer,
		HMACSHAStrategy: prefixedRefresh{compose.NewOAuth2HMACStrategy(fc)},
		Config:          fc,
	}
	oidc := &openid.DefaultStrategy{Signer: d.Signer, Config: fc}
	strategy := &compose.CommonStrategy{CoreStrategy: core, OpenIDConnectTokenStrategy: oidc, Signer: d.Signer}
	tokens := apptoken.New(d.Store, d.WeChat, d.Cipher, d.Now)
	grant := newWeChatGrant(fc, core, oidc, tokens, d)
	grant.maxAge = cfg.SessionMaxAge
	gate := chainGate{maxAge: cfg.SessionMaxAge, idTTL: cfg.IDTokenTTL, now: d.Now}
	oauth := compose.Compose(fc, reuseWatch{Store: d.Store, gate: gate}, strategy,
		func(fosite.Configurator, interface{}, interface{}) interface{} { return grant },
		compose.OAuth2ClientCredentialsGrantFactory,
		// Scan-to-login: the authorization code (the OIDC handler adds the
		// ID token, the PKCE handler binds the code to its verifier). Its
		// tokens are written by the store's fast path, if it has one.
		authcode.Factory,
		compose.OpenIDConnectExplicitFactory,
		compose.OAuth2PKCEFactory,
		// The exchange is written after the ID token is signed (authcode.Defer).
		authcode.WriterFactory(d.Store),
		// fosite's order: the OAuth2 refresh handler before the OIDC one.
		// Its tokens are written by the store's fast path, if it has one.
		refresh.Factory(d.Store),
		// After the code and refresh handlers load the session, before the
		// OIDC refresh handler signs: disabled users, fresh user claims.
		compose.OpenIDConnectRefreshFactory,
		// After every handler that loads a grant's session (and after the
		// OIDC refresh handler resets the ID token's expiry), before any
		// token is issued: the chain's absolute lifetime and a narrowed
		// scope, then disabled users and the user claims of that scope.
		func(fosite.Configurator, interface{}, interface{}) interface{} { return gate },
		func(fosite.Configurator, interface{}, interface{}) interface{} { return userGate{users: d.Store} },
		// Validates access tokens against storage too, so revoked tokens fail.
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
	)
	ownGrantsOnly(fc)
	return &Provider{
		oauth: oauth, cfg: cfg, users: d.Store, account: d.Store, clients: d.Store, audit: d.Audit, limits: d.Limits,
		accessTokens: core, signer: d.Signer,
		store: d.Store, logins: d.Store, login: cfg.Login.withDefaults(), now: d.Now,
		pictures: &scan.Pictures{Issuer: cfg.Issuer, WX: d.WXACode, Tokens: tokens, Cipher: d.Cipher},
		grant:    grant,
	}, nil
}

// WriteAccessError writes a token-endpoint error in RFC 6749 §5.2 shape.
func (p *Provider) WriteAccessError(ctx context.Context, w http.ResponseWriter, ar fosite.AccessRequester, err error) {
	p.oauth.WriteAccessError(ctx, w, ar, err)
}

// WriteAccessResponse writes a successful token response.
func (p *Provider) WriteAccessResponse(ctx context.Context, w http.ResponseWriter, ar fosite.AccessRequester, resp fosite.AccessResponder) {
	p.oauth.WriteAccessResponse(ctx, w, ar, resp)
}
