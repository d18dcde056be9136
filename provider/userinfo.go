package provider

import (
	"context"
	"errors"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// ErrInvalidToken means the bearer token is missing, malformed, expired or
// revoked (RFC 6750 invalid_token).
var ErrInvalidToken = errors.New("invalid token")

// ErrInsufficientScope means the token is valid but lacks the openid scope
// that OpenID Connect requires of the userinfo endpoint.
var ErrInsufficientScope = errors.New("insufficient scope")

// UserInfo returns the OpenID Connect claims an access token's scopes allow:
// always sub; phone_number and phone_number_verified with scope phone.
func (p *Provider) UserInfo(ctx context.Context, token string) (map[string]any, error) {
	if token == "" {
		return nil, ErrInvalidToken
	}
	use, ar, err := p.oauth.IntrospectToken(ctx, token, fosite.AccessToken, NewSession())
	if err != nil || use != fosite.AccessToken {
		return nil, ErrInvalidToken
	}
	sess, ok := ar.GetSession().(*Session)
	if !ok || sess.Subject == "" {
		return nil, ErrInvalidToken
	}
	if !ar.GetGrantedScopes().Has(ScopeOpenID) {
		return nil, ErrInsufficientScope
	}
	claims := map[string]any{"sub": sess.Subject}
	if !ar.GetGrantedScopes().Has(ScopePhone) {
		return claims, nil
	}
	user, err := p.users.GetUser(ctx, sess.Subject)
	if errors.Is(err, storage.ErrNotFound) {
		return claims, nil // a client_credentials subject is not a user
	}
	if err != nil {
		return nil, err
	}
	if user.PhoneNumber != "" {
		claims["phone_number"] = user.PhoneNumber
		claims["phone_number_verified"] = true
	}
	return claims, nil
}
