package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/storage"
)

// ErrInvalidToken means the bearer token is missing, malformed, expired or
// revoked (RFC 6750 invalid_token).
var ErrInvalidToken = errors.New("invalid token")

// ErrTokenInactive is the ErrInvalidToken of a token this server's keys
// signed that is no longer accepted: expired, revoked, or issued under
// another issuer sharing our keys. Rate limits tell it from a forged or
// malformed token: its sender once held it legitimately (a user behind
// the same NAT as a valid one), while junk costs the sender's budget.
var ErrTokenInactive = fmt.Errorf("%w: expired or revoked", ErrInvalidToken)

// accessTokenValidator checks an access token's signature and expiry,
// without the stored session (fosite's oauth2.DefaultJWTStrategy).
type accessTokenValidator interface {
	ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error
}

// rejected is the ErrInvalidToken of a token fosite refused: ErrTokenInactive
// when its signature is ours (fosite looks the session up before checking
// the signature, so an unknown session alone says nothing about it).
func (p *Provider) rejected(ctx context.Context, token string) error {
	if p.accessTokens == nil {
		return ErrInvalidToken
	}
	if err := p.accessTokens.ValidateAccessToken(ctx, nil, token); err == nil || errors.Is(err, fosite.ErrTokenExpired) {
		return ErrTokenInactive
	}
	return ErrInvalidToken
}

// ErrInsufficientScope means the token is valid but lacks the openid scope
// that OpenID Connect requires of the userinfo endpoint.
var ErrInsufficientScope = errors.New("insufficient scope")

// UserInfo returns the OpenID Connect claims an access token's scopes allow:
// always sub; phone_number and phone_number_verified with scope phone;
// nickname, picture and updated_at with scope profile. A disabled user's
// token is inactive (disabling deletes their tokens; this covers one that
// raced it).
func (p *Provider) UserInfo(ctx context.Context, token string) (map[string]any, error) {
	ar, sess, err := p.bearer(ctx, token)
	if err != nil {
		return nil, err
	}
	scopes := ar.GetGrantedScopes()
	if !scopes.Has(ScopeOpenID) {
		return nil, ErrInsufficientScope
	}
	claims := map[string]any{"sub": sess.Subject}
	if !scopes.Has(ScopePhone) && !scopes.Has(ScopeProfile) {
		return claims, nil
	}
	user, err := p.users.GetUser(ctx, sess.Subject)
	if errors.Is(err, storage.ErrNotFound) {
		return claims, nil // a client_credentials subject is not a user
	}
	if err != nil {
		return nil, err
	}
	if user.Disabled() {
		return nil, ErrTokenInactive
	}
	if scopes.Has(ScopePhone) && user.PhoneNumber != "" {
		claims["phone_number"] = user.PhoneNumber
		claims["phone_number_verified"] = true
	}
	if scopes.Has(ScopeProfile) {
		profileClaims(claims, user)
	}
	return claims, nil
}

// bearer verifies an access token presented as a bearer credential: our
// signature, unexpired, still stored (not revoked), our issuer, with a
// subject.
func (p *Provider) bearer(ctx context.Context, token string) (fosite.AccessRequester, *Session, error) {
	if token == "" {
		return nil, nil, ErrInvalidToken
	}
	use, ar, err := p.oauth.IntrospectToken(ctx, token, fosite.AccessToken, NewSession())
	if errors.Is(err, storage.ErrUnavailable) {
		return nil, nil, outage(err)
	}
	if err != nil || use != fosite.AccessToken {
		return nil, nil, p.rejected(ctx, token)
	}
	// fosite checks the signature, the expiry and the stored record, not
	// the issuer: a token minted under another issuer that shares our keys
	// and database (a second configuration, a staging deployment) is not
	// ours to answer for.
	if iss, err := p.tokenIssuer(ctx, token); err != nil || iss != p.cfg.Issuer {
		return nil, nil, ErrTokenInactive // signed by our keys (fosite checked), not ours to answer
	}
	sess, ok := ar.GetSession().(*Session)
	if !ok || sess.Subject == "" {
		return nil, nil, ErrInvalidToken
	}
	return ar, sess, nil
}

// ErrNotAUser is a valid bearer token that may not act on login tickets:
// a client's own token (client_credentials), or a user's token from a
// website rather than from the mini-program.
var ErrNotAUser = errors.New("the access token is not a mini-program user's")

// BearerUser returns the user a mini-program's bearer access token was
// issued to, for scanning and approving a login ticket. Only a token of a
// client with the WeChat-code grant qualifies: a website's token (from
// the authorization code grant) must not approve logins to other
// websites, or one relying party, or whoever steals its token, could log
// in as its users anywhere. ErrInvalidToken for a bad token.
func (p *Provider) BearerUser(ctx context.Context, token string) (string, error) {
	ar, sess, err := p.bearer(ctx, token)
	if err != nil {
		return "", err
	}
	c, ok := ar.GetClient().(*storage.OAuthClient)
	if !ok || c.Record.WeChatAppID == "" || !c.GetGrantTypes().Has(grants.WeChatCode) {
		return "", ErrNotAUser
	}
	u, err := p.users.GetUser(ctx, sess.Subject)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", ErrNotAUser
		}
		return "", outage(err)
	}
	if u.Disabled() {
		// Disabling deleted the user's tokens; this one raced it.
		return "", ErrTokenInactive
	}
	return sess.Subject, nil
}

// tokenIssuer reads the iss claim of an access token (a JWT) that fosite
// has just verified. The signer remembers tokens it verified (keys.Signer),
// so this parses nothing again; a token that no longer verifies has no
// issuer to answer for.
func (p *Provider) tokenIssuer(ctx context.Context, token string) (string, error) {
	t, err := p.signer.Decode(ctx, token)
	if err != nil {
		return "", err
	}
	iss, _ := t.Claims["iss"].(string)
	return iss, nil
}
