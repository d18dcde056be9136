package authcode

import (
	"context"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
)

// Handler is fosite's authorization code handler with its token writing
// left to the Writer. It authorizes, reads, checks, signs and answers
// exactly as fosite's does.
type Handler struct {
	*oauth2.AuthorizeExplicitGrantHandler
}

// Factory returns the compose.Factory of the handler, in the place of
// compose.OAuth2AuthorizeExplicitFactory; compose WriterFactory after the
// OpenID Connect handler.
func Factory(c fosite.Configurator, st interface{}, strategy interface{}) interface{} {
	h := compose.OAuth2AuthorizeExplicitFactory(c, st, strategy).(*oauth2.AuthorizeExplicitGrantHandler)
	return &Handler{AuthorizeExplicitGrantHandler: h}
}

// PopulateTokenEndpointResponse is fosite's (v0.49.0) without its write:
// in a context from Defer it signs the tokens and answers, and leaves the
// code's invalidation and the tokens to the Writer, composed after the
// OpenID Connect handler, so that the exchange is written last, when
// nothing is left that could fail after it. Without Defer it is fosite's.
// Its errors are fosite's: a storage error is a server error wrapping it.
func (h *Handler) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	later, deferred := ctx.Value(pendingKey{}).(*pending)
	if !deferred || !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return h.AuthorizeExplicitGrantHandler.PopulateTokenEndpointResponse(ctx, ar, resp)
	}
	code := ar.GetRequestForm().Get("code")
	signature := h.AuthorizeCodeStrategy.AuthorizeCodeSignature(ctx, code)
	authorized, err := h.CoreStorage.GetAuthorizeCodeSession(ctx, signature, ar.GetSession())
	if err != nil {
		return serverError(err)
	} else if err := h.AuthorizeCodeStrategy.ValidateAuthorizeCode(ctx, ar, code); err != nil {
		// After the read, so the session is hydrated (fosite's order).
		return fosite.ErrInvalidRequest.WithWrap(err).WithDebug(err.Error())
	}
	for _, scope := range authorized.GetGrantedScopes() {
		ar.GrantScope(scope)
	}
	for _, audience := range authorized.GetGrantedAudience() {
		ar.GrantAudience(audience)
	}
	access, accessSig, err := h.AccessTokenStrategy.GenerateAccessToken(ctx, ar)
	if err != nil {
		return serverError(err)
	}
	var refresh, refreshSig string
	if h.canIssueRefreshToken(ctx, authorized) {
		if refresh, refreshSig, err = h.RefreshTokenStrategy.GenerateRefreshToken(ctx, ar); err != nil {
			return serverError(err)
		}
	}
	// The tokens are stored with the session as they were signed from; the
	// OpenID Connect handler goes on to change it for the ID token.
	record := ar.Sanitize([]string{})
	record.SetSession(ar.GetSession().Clone())
	*later = pending{code: signature, access: accessSig, refresh: refreshSig, record: record}
	h.respond(ctx, ar, resp, access, refresh)
	return nil
}

// respond sets the access token response as fosite's handler does.
func (h *Handler) respond(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder, access, refresh string) {
	resp.SetAccessToken(access)
	resp.SetTokenType("bearer")
	lifespan := fosite.GetEffectiveLifespan(ar.GetClient(), fosite.GrantTypeAuthorizationCode, fosite.AccessToken, h.Config.GetAccessTokenLifespan(ctx))
	if exp := ar.GetSession().GetExpiresAt(fosite.AccessToken); !exp.IsZero() {
		lifespan = time.Until(exp)
	}
	resp.SetExpiresIn(lifespan)
	resp.SetScopes(ar.GetGrantedScopes())
	if refresh != "" {
		resp.SetExtra("refresh_token", refresh)
	}
}

// canIssueRefreshToken is fosite's (unexported there): one of the refresh
// token scopes, if set, was granted, and the client may refresh.
func (h *Handler) canIssueRefreshToken(ctx context.Context, r fosite.Requester) bool {
	scopes := h.Config.GetRefreshTokenScopes(ctx)
	if len(scopes) > 0 && !r.GetGrantedScopes().HasOneOf(scopes...) {
		return false
	}
	return r.GetClient().GetGrantTypes().Has("refresh_token")
}

// serverError is how fosite's handler answers a storage or strategy error.
func serverError(err error) error {
	return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
}
