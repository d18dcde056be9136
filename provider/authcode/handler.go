package authcode

import (
	"context"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
)

// Exchanger is the fast path of a code exchange, for a store that has one
// (postgres.Store): the code's invalidation and the new tokens are one
// statement, shared with concurrent exchanges' in one commit, instead of a
// transaction of their own (see storage/postgres/fastcode.go). written is
// false, with no error, when it wrote nothing for a reason other than a
// refusal; its refusals are InvalidateAuthorizeCodeSession's.
type Exchanger interface {
	ExchangeAndIssue(ctx context.Context, codeSignature string, issue func(context.Context) error) (written bool, _ error)
}

// Handler is fosite's authorization code handler with its token writing
// done by an Exchanger when the store is one. It authorizes, reads, checks
// and answers exactly as fosite's does.
type Handler struct {
	*oauth2.AuthorizeExplicitGrantHandler
	fast Exchanger // nil: fosite's path
}

// Factory returns the compose.Factory of the handler, in the place of
// compose.OAuth2AuthorizeExplicitFactory. store is the store itself: the
// one fosite is composed with may wrap it.
func Factory(store any) compose.Factory {
	fast, _ := store.(Exchanger)
	return func(c fosite.Configurator, st interface{}, strategy interface{}) interface{} {
		h := compose.OAuth2AuthorizeExplicitFactory(c, st, strategy).(*oauth2.AuthorizeExplicitGrantHandler)
		return &Handler{AuthorizeExplicitGrantHandler: h, fast: fast}
	}
}

// PopulateTokenEndpointResponse is fosite's (v0.49.0), with its
// InvalidateAuthorizeCodeSession and token writes in one call to the
// Exchanger. Its errors are fosite's: a storage error is a server error
// wrapping it, which the provider refines (a used code, a disabled user,
// an unavailable database).
func (h *Handler) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	if h.fast == nil || !h.CanHandleTokenEndpointRequest(ctx, ar) {
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
	written, err := h.fast.ExchangeAndIssue(ctx, signature, func(ctx context.Context) error {
		if err := h.CoreStorage.CreateAccessTokenSession(ctx, accessSig, ar.Sanitize([]string{})); err != nil {
			return err
		}
		if refreshSig == "" {
			return nil
		}
		return h.CoreStorage.CreateRefreshTokenSession(ctx, refreshSig, accessSig, ar.Sanitize([]string{}))
	})
	if err != nil {
		return serverError(err)
	}
	if !written {
		return h.AuthorizeExplicitGrantHandler.PopulateTokenEndpointResponse(ctx, ar, resp)
	}
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
	return nil
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
