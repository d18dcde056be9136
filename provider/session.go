package provider

import (
	"time"

	"github.com/mohae/deepcopy"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// Session is the one session type of every grant: it carries the OpenID
// Connect session (ID-token claims, expiries, subject) and builds the RFC 9068
// access-token claims from it.
type Session struct {
	*openid.DefaultSession `json:"oidc"`
	// ClientID is the client the tokens were issued to (RFC 9068 client_id).
	ClientID string `json:"client_id"`
	// ChainScopes, set while a refresh narrows the scope, is the chain's
	// whole grant, which the new refresh token keeps (chainGate).
	ChainScopes []string `json:"chain_scopes,omitempty"`
}

var (
	_ oauth2.JWTSessionContainer = (*Session)(nil)
	_ openid.Session             = (*Session)(nil)
)

// NewSession returns an empty session, also used as the prototype fosite
// decodes stored sessions into.
func NewSession() *Session {
	return &Session{DefaultSession: openid.NewDefaultSession()}
}

// GetJWTClaims builds fresh access-token claims on every call. Keeping a
// claims value in the session would carry the first token's iat and jti into
// every refreshed token (fosite#774).
func (s *Session) GetJWTClaims() jwt.JWTClaimsContainer {
	extra := map[string]interface{}{}
	if s.ClientID != "" {
		extra["client_id"] = s.ClientID
	}
	return &jwt.JWTClaims{Subject: s.Subject, Extra: extra}
}

// GetJWTHeader marks access tokens as RFC 9068 tokens. The kid comes from the
// signer at signing time and is never stored in the session (hydra#3573).
func (s *Session) GetJWTHeader() *jwt.Headers {
	return &jwt.Headers{Extra: map[string]interface{}{"typ": "at+jwt"}}
}

// GetExpiresAt reports the expiry fosite set for a token type.
func (s *Session) GetExpiresAt(key fosite.TokenType) time.Time {
	return s.DefaultSession.GetExpiresAt(key)
}

// Clone deep-copies the session; fosite clones before mutating.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	return deepcopy.Copy(s).(fosite.Session)
}
