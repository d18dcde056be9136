package provider

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

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
}

// Provider is wxidp's OAuth2 engine.
type Provider struct {
	oauth fosite.OAuth2Provider
	cfg   Config
}

// ErrConfig reports an unusable provider configuration.
var ErrConfig = errors.New("provider: invalid configuration")

// TokenPath is the token endpoint's path on the public listener.
const TokenPath = "/oauth2/token"

// GrantTypes lists the grants this provider serves, for discovery.
var GrantTypes = []string{"client_credentials"}

// New composes fosite. store is the whole fosite storage; signer signs and
// verifies every JWT; hasher checks client secrets.
func New(cfg Config, store storage.FositeStore, signer jwt.Signer, hasher fosite.Hasher) (*Provider, error) {
	if len(cfg.GlobalSecret) < 32 {
		// fosite would only fail at the first issuance; fail at start-up.
		return nil, errors.Join(ErrConfig, errors.New("global secret must be at least 32 bytes"))
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
		ScopeStrategy:              fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:   fosite.ExactAudienceMatchingStrategy,
		JWTScopeClaimKey:           jwt.JWTScopeFieldString,
		ClientSecretsHasher:        hasher,
		SendDebugMessagesToClients: false,
		MinParameterEntropy:        fosite.MinParameterEntropy,
		RefreshTokenScopes:         []string{"offline_access"},
	}
	strategy := &compose.CommonStrategy{
		CoreStrategy: &oauth2.DefaultJWTStrategy{
			Signer:          signer,
			HMACSHAStrategy: compose.NewOAuth2HMACStrategy(fc),
			Config:          fc,
		},
		OpenIDConnectTokenStrategy: &openid.DefaultStrategy{Signer: signer, Config: fc},
		Signer:                     signer,
	}
	oauth := compose.Compose(fc, store, strategy,
		compose.OAuth2ClientCredentialsGrantFactory,
	)
	return &Provider{oauth: oauth, cfg: cfg}, nil
}

// Token runs the token endpoint: authenticates the client, applies the
// grant's rules and issues tokens. Errors are fosite RFC6749 errors.
func (p *Provider) Token(ctx context.Context, r *http.Request) (fosite.AccessRequester, fosite.AccessResponder, error) {
	sess := NewSession()
	ar, err := p.oauth.NewAccessRequest(ctx, r, sess)
	if ar == nil && errors.Is(err, fosite.ErrInvalidRequest) {
		// fosite answers a grant no handler claims with a bare
		// invalid_request (and no request); RFC 6749 §5.2 names it.
		return nil, nil, fosite.ErrUnsupportedGrantType.WithHint("The grant_type is not supported by this server.")
	}
	if err != nil {
		return ar, nil, err
	}
	if ar.GetGrantTypes().ExactOne(string(fosite.GrantTypeClientCredentials)) {
		grantClientCredentials(ar, sess)
	}
	resp, err := p.oauth.NewAccessResponse(ctx, ar)
	if err != nil {
		return ar, nil, err
	}
	return ar, resp, nil
}

// grantClientCredentials grants what fosite has already checked lies within
// the client's registration: the requested scopes, and the requested audience
// or else the registered one or else the client itself, so aud is never
// empty.
func grantClientCredentials(ar fosite.AccessRequester, sess *Session) {
	client := ar.GetClient()
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	aud := ar.GetRequestedAudience()
	if len(aud) == 0 {
		aud = client.GetAudience()
	}
	if len(aud) == 0 {
		aud = []string{client.GetID()}
	}
	for _, a := range aud {
		ar.GrantAudience(a)
	}
	sess.Subject = client.GetID()
	sess.ClientID = client.GetID()
}

// WriteAccessError writes a token-endpoint error in RFC 6749 §5.2 shape.
func (p *Provider) WriteAccessError(ctx context.Context, w http.ResponseWriter, ar fosite.AccessRequester, err error) {
	p.oauth.WriteAccessError(ctx, w, ar, err)
}

// WriteAccessResponse writes a successful token response.
func (p *Provider) WriteAccessResponse(ctx context.Context, w http.ResponseWriter, ar fosite.AccessRequester, resp fosite.AccessResponder) {
	p.oauth.WriteAccessResponse(ctx, w, ar, resp)
}
