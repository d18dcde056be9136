package refresh

import (
	"context"
	"errors"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
)

// Rotator is the fast path of a refresh, for a store that has one
// (postgres.Store): the rotation and the new tokens are one statement,
// shared with concurrent refreshes' in one commit, instead of a transaction
// of their own (see storage/postgres/fastrefresh.go). written is false,
// with no error, when it wrote nothing for a reason other than a refusal.
type Rotator interface {
	RotateAndIssue(ctx context.Context, requestID, presented string, issue func(context.Context) error) (written bool, _ error)
}

// Handler is fosite's refresh-token handler with its token writing done
// by a Rotator when the store is one. It reads, checks and answers exactly
// as fosite's does.
type Handler struct {
	*oauth2.RefreshTokenGrantHandler
	fast Rotator // nil: fosite's path
}

// Factory returns the compose.Factory of the handler, in the place of
// compose.OAuth2RefreshTokenGrantFactory. store is the store itself: the
// one fosite is composed with may wrap it.
func Factory(store any) compose.Factory {
	fast, _ := store.(Rotator)
	return func(c fosite.Configurator, st interface{}, strategy interface{}) interface{} {
		h := compose.OAuth2RefreshTokenGrantFactory(c, st, strategy).(*oauth2.RefreshTokenGrantHandler)
		return &Handler{RefreshTokenGrantHandler: h, fast: fast}
	}
}

// PopulateTokenEndpointResponse is fosite's (v0.49.0), with its
// RotateRefreshToken and two token writes in one call to the Rotator.
func (h *Handler) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	if h.fast == nil || !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return h.RefreshTokenGrantHandler.PopulateTokenEndpointResponse(ctx, ar, resp)
	}
	accessToken, accessSig, err := h.AccessTokenStrategy.GenerateAccessToken(ctx, ar)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	refreshToken, refreshSig, err := h.RefreshTokenStrategy.GenerateRefreshToken(ctx, ar)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	presented := h.RefreshTokenStrategy.RefreshTokenSignature(ctx, ar.GetRequestForm().Get("refresh_token"))
	stored := ar.Sanitize([]string{})
	stored.SetID(ar.GetID())
	written, err := h.fast.RotateAndIssue(ctx, ar.GetID(), presented, func(ctx context.Context) error {
		if err := h.TokenRevocationStorage.CreateAccessTokenSession(ctx, accessSig, stored); err != nil {
			return err
		}
		return h.TokenRevocationStorage.CreateRefreshTokenSession(ctx, refreshSig, accessSig, stored)
	})
	if err != nil {
		return storageError(err)
	}
	if !written {
		return h.RefreshTokenGrantHandler.PopulateTokenEndpointResponse(ctx, ar, resp)
	}
	resp.SetAccessToken(accessToken)
	resp.SetTokenType("bearer")
	lifespan := fosite.GetEffectiveLifespan(ar.GetClient(), fosite.GrantTypeRefreshToken, fosite.AccessToken, h.Config.GetAccessTokenLifespan(ctx))
	if exp := ar.GetSession().GetExpiresAt(fosite.AccessToken); !exp.IsZero() {
		lifespan = time.Until(exp)
	}
	resp.SetExpiresIn(lifespan)
	resp.SetScopes(ar.GetGrantedScopes())
	resp.SetExtra("refresh_token", refreshToken)
	return nil
}

// storageError answers a storage error as fosite's refresh handler
// does (handleRefreshTokenEndpointStorageError): the loser of concurrent
// rotations is asked to retry, anything else is a server error, which
// Token and outage refine (a disabled user, an unavailable database).
func storageError(err error) error {
	switch {
	case errors.Is(err, fosite.ErrSerializationFailure):
		return fosite.ErrInvalidRequest.WithDebug(err.Error()).WithWrap(err).
			WithHint("Failed to refresh token because of multiple concurrent requests using the same token. Please retry the request.")
	case errors.Is(err, fosite.ErrNotFound), errors.Is(err, fosite.ErrInactiveToken):
		return fosite.ErrInvalidRequest.WithDebug(err.Error()).WithWrap(err).
			WithHint("Failed to refresh token. Please retry the request.")
	}
	return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
}
