package provider

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// ScopeIntrospect lets a client introspect tokens issued to other clients
// (resource servers); any other client only sees its own tokens as active.
const ScopeIntrospect = "introspect"

// Introspection is an RFC 7662 answer. Inactive answers carry nothing else,
// so they reveal nothing about the token.
type Introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	Audience  []string `json:"aud,omitempty"`
	Issuer    string   `json:"iss,omitempty"`
	ExpiresAt int64    `json:"exp,omitempty"`
	IssuedAt  int64    `json:"iat,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
}

// Introspect answers RFC 7662 (see introspect) under the failed-auth budget.
func (p *Provider) Introspect(ctx context.Context, r *http.Request) (res *Introspection, err error) {
	err = p.limits.guardClientAuth(ctx, r, func() error {
		res, err = p.introspect(ctx, r)
		return err
	})
	return res, err
}

// introspect answers RFC 7662 for a client authenticated with HTTP Basic.
// Errors are fosite errors (invalid_client, invalid_request).
func (p *Provider) introspect(ctx context.Context, r *http.Request) (*Introspection, error) {
	user, _, ok := r.BasicAuth()
	if !ok {
		// fosite would also accept a bearer access token as credentials;
		// introspection here is for registered clients only.
		return nil, fosite.ErrInvalidClient.WithHint("Authenticate with HTTP Basic client credentials.")
	}
	callerID, err := url.QueryUnescape(user)
	if err != nil {
		return nil, fosite.ErrInvalidClient
	}
	if r.PostFormValue("token") == "" {
		return nil, fosite.ErrInvalidRequest.WithHint("The 'token' parameter is missing.")
	}
	ir, err := p.oauth.NewIntrospectionRequest(ctx, r, NewSession())
	// Order matters: an outage hides inside the other two, and fosite wraps
	// the validators' own errors (which may be ErrRequestUnauthorized) in
	// ErrInactiveToken.
	switch {
	case errors.Is(err, storage.ErrUnavailable):
		return nil, outage(err)
	case errors.Is(err, fosite.ErrInactiveToken):
		return &Introspection{}, nil
	case errors.Is(err, fosite.ErrRequestUnauthorized):
		return nil, fosite.ErrInvalidClient.WithHint("Client authentication failed.")
	case err != nil:
		return nil, err
	}
	ar := ir.GetAccessRequester()
	if ar.GetClient().GetID() != callerID {
		caller, err := p.clients.GetClient(ctx, callerID)
		if errors.Is(err, storage.ErrUnavailable) {
			return nil, outage(err)
		}
		if err != nil || !fosite.Arguments(caller.GetScopes()).Has(ScopeIntrospect) {
			return &Introspection{}, nil
		}
	}
	out := &Introspection{
		Active:   true,
		Scope:    strings.Join(ar.GetGrantedScopes(), " "),
		ClientID: ar.GetClient().GetID(),
		Subject:  ar.GetSession().GetSubject(),
		Audience: ar.GetGrantedAudience(),
		IssuedAt: ar.GetRequestedAt().Unix(),
	}
	kind := fosite.AccessToken
	out.TokenType = "Bearer"
	if ir.GetTokenUse() == fosite.RefreshToken {
		kind, out.TokenType = fosite.RefreshToken, "refresh_token"
	}
	if out.Issuer, err = p.introspectedIssuer(ctx, kind, r.PostFormValue("token"), ar); err != nil {
		return &Introspection{}, nil
	}
	if exp := ar.GetSession().GetExpiresAt(kind); !exp.IsZero() {
		out.ExpiresAt = exp.Unix()
	}
	return out, nil
}

// introspectedIssuer names who issued an active token: an access token says
// so itself (another issuer sharing our keys and database may have minted
// it, and a resource server must see that); a refresh token is opaque, so
// it is the issuer recorded in its session, else this server, the only
// kind of issuer that can redeem it (one holding the same secrets).
func (p *Provider) introspectedIssuer(ctx context.Context, kind fosite.TokenType, token string, ar fosite.Requester) (string, error) {
	if kind == fosite.AccessToken {
		return p.tokenIssuer(ctx, token)
	}
	if sess, ok := ar.GetSession().(*Session); ok && sess.IDTokenClaims().Issuer != "" {
		return sess.IDTokenClaims().Issuer, nil
	}
	return p.cfg.Issuer, nil
}
