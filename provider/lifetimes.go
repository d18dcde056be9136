package provider

import (
	"context"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/storage"
)

// DefaultSessionMaxAge is how long a login's token chain may live however
// often it is refreshed (WXIDP_SESSION_MAX_AGE).
const DefaultSessionMaxAge = 90 * 24 * time.Hour

// RefreshTokenPrefix starts every refresh token, so secret scanners and log
// filters can recognise one: wxrt_ then 86 base64url characters (token and
// HMAC). fosite spells its own ory_rt_; tokens issued under that spelling
// keep working (the HMAC is over the part after the prefix).
const RefreshTokenPrefix = "wxrt_"

const fositeRefreshPrefix = "ory_rt_"

// prefixedRefresh is fosite's HMAC strategy with our refresh-token prefix.
type prefixedRefresh struct{ oauth2.CoreStrategy }

func (s prefixedRefresh) GenerateRefreshToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	tok, sig, err := s.CoreStrategy.GenerateRefreshToken(ctx, r)
	if err != nil {
		return "", "", err
	}
	return RefreshTokenPrefix + strings.TrimPrefix(tok, fositeRefreshPrefix), sig, nil
}

func (s prefixedRefresh) RefreshTokenSignature(ctx context.Context, tok string) string {
	return s.CoreStrategy.RefreshTokenSignature(ctx, fositeSpelling(tok))
}

func (s prefixedRefresh) ValidateRefreshToken(ctx context.Context, r fosite.Requester, tok string) error {
	return s.CoreStrategy.ValidateRefreshToken(ctx, r, fositeSpelling(tok))
}

// fositeSpelling turns wxrt_X into the ory_rt_X fosite verifies; any other
// token is left as it is.
func fositeSpelling(tok string) string {
	if rest, ok := strings.CutPrefix(tok, RefreshTokenPrefix); ok {
		return fositeRefreshPrefix + rest
	}
	return tok
}

// sessionMaxAge is the absolute lifetime of client's chains: its own
// session_max_age_seconds when shorter than the server's.
func sessionMaxAge(server time.Duration, c fosite.Client) time.Duration {
	if oc, ok := c.(*storage.OAuthClient); ok && oc.Record.SessionMaxAge > 0 && oc.Record.SessionMaxAge < server {
		return oc.Record.SessionMaxAge
	}
	return server
}

// clipToSession caps the expiries of the tokens about to be issued at the
// chain's deadline: no token outlives the login's absolute lifetime. now is
// when the ID token will be issued (fosite then takes its lifetime from
// idTTL unless the claims already carry an expiry).
func clipToSession(sess *Session, deadline, now time.Time, idTTL time.Duration) {
	for _, tt := range []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken} {
		if exp := sess.GetExpiresAt(tt); !exp.IsZero() && exp.After(deadline) {
			sess.SetExpiresAt(tt, deadline)
		}
	}
	if now.Add(idTTL).After(deadline) {
		sess.IDTokenClaims().ExpiresAt = deadline
	}
}

// chainGate is a token-endpoint handler for the grants that continue a
// login (authorization code, refresh token). It runs after fosite's
// handlers have loaded the grant's session (the OIDC refresh handler has
// reset the ID token's expiry), before any token is issued:
//   - the chain ends at its login (auth_time) plus the session's maximum
//     age: a refresh past it is invalid_grant, and every token issued
//     before it is clipped to it;
//   - a refresh may narrow the scope (RFC 6749 §6): the new access token
//     carries the subset asked for, while the new refresh token keeps the
//     whole grant (reuseWatch stores it so), so a later refresh may ask for
//     all of it again.
type chainGate struct {
	checkOnly
	maxAge time.Duration
	idTTL  time.Duration
	now    func() time.Time
}

func (g chainGate) CanHandleTokenEndpointRequest(_ context.Context, ar fosite.AccessRequester) bool {
	gt := ar.GetGrantTypes()
	return gt.ExactOne(grants.AuthorizationCode) || gt.ExactOne(grants.RefreshToken)
}

func (g chainGate) HandleTokenEndpointRequest(ctx context.Context, ar fosite.AccessRequester) error {
	if !g.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	sess, ok := ar.GetSession().(*Session)
	if !ok {
		return nil
	}
	refresh := ar.GetGrantTypes().ExactOne(grants.RefreshToken)
	if refresh {
		if err := narrowScope(ar, sess); err != nil {
			return err
		}
	}
	login := sess.IDTokenClaims().AuthTime
	if login.IsZero() {
		return nil // no login behind it (a client's own chain)
	}
	now := g.now()
	deadline := login.Add(sessionMaxAge(g.maxAge, ar.GetClient()))
	if !now.Before(deadline) {
		return fosite.ErrInvalidGrant.WithHint("The login this grant comes from reached its maximum age: log in again.")
	}
	clipToSession(sess, deadline, now, g.idLifespan(ar))
	return nil
}

// idLifespan is the ID-token lifetime of ar's client and grant.
func (g chainGate) idLifespan(ar fosite.Requester) time.Duration {
	gt := fosite.GrantTypeRefreshToken
	if ar.GetRequestForm().Get("grant_type") == grants.AuthorizationCode {
		gt = fosite.GrantTypeAuthorizationCode
	}
	return fosite.GetEffectiveLifespan(ar.GetClient(), gt, fosite.IDToken, g.idTTL)
}

// clipOIDC caps the ID token of a code exchange: fosite's OIDC handler
// reloads the session stored at the authorization (GetOpenIDConnectSession)
// after chainGate ran, which resets the ID token's expiry.
func (g chainGate) clipOIDC(req fosite.Requester) {
	sess, ok := req.GetSession().(*Session)
	if !ok || sess.IDTokenClaims().AuthTime.IsZero() {
		return
	}
	now := g.now()
	deadline := sess.IDTokenClaims().AuthTime.Add(sessionMaxAge(g.maxAge, req.GetClient()))
	if now.Add(g.idLifespan(req)).After(deadline) {
		sess.IDTokenClaims().ExpiresAt = deadline
	}
}

// narrowScope applies a refresh request's scope parameter: a subset of the
// chain's grant (fosite granted the whole of it), or invalid_scope. The
// whole grant stays in the session (ChainScopes) for the new refresh
// token.
func narrowScope(ar fosite.AccessRequester, sess *Session) error {
	sess.ChainScopes = nil
	asked := fosite.RemoveEmpty(strings.Split(ar.GetRequestForm().Get("scope"), " "))
	if len(asked) == 0 {
		return nil
	}
	granted := ar.GetGrantedScopes()
	for _, s := range asked {
		if !granted.Has(s) {
			return fosite.ErrInvalidScope.WithHintf("The refresh token was not granted scope '%s': a refresh may only narrow the grant.", s)
		}
	}
	req, ok := ar.(*fosite.AccessRequest)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected access request type")
	}
	sess.ChainScopes = append([]string(nil), granted...)
	req.GrantedScope = fosite.Arguments(dedupe(asked))
	return nil
}

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !fosite.Arguments(out).Has(s) {
			out = append(out, s)
		}
	}
	return out
}

// GetOpenIDConnectSession is the store's, with the ID token capped at the
// chain's deadline again (chainGate.clipOIDC).
func (w reuseWatch) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	req, err := w.Store.GetOpenIDConnectSession(ctx, code, r)
	if err == nil && req != nil {
		w.gate.clipOIDC(req)
	}
	return req, err
}

// CreateRefreshTokenSession stores a refresh token with its chain's whole
// grant when the access token issued beside it was narrowed.
func (w reuseWatch) CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, req fosite.Requester) error {
	if sess, ok := req.GetSession().(*Session); ok && len(sess.ChainScopes) > 0 {
		if r, ok := req.(*fosite.Request); ok {
			whole := *r
			whole.GrantedScope = fosite.Arguments(sess.ChainScopes)
			req = &whole
		}
	}
	return w.Store.CreateRefreshTokenSession(ctx, signature, accessSignature, req)
}
