package provider

import (
	"context"
	"errors"
	"net/http"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/provider/wechat"
)

// ErrWeChatQuota is WeChat's per-minute quota (45011): the client should
// retry later, so it is a 429 the web layer pairs with Retry-After.
var ErrWeChatQuota = &fosite.RFC6749Error{
	ErrorField:       "temporarily_unavailable",
	DescriptionField: "The login service is over its rate limit. Retry later.",
	CodeField:        http.StatusTooManyRequests,
}

// wechatError maps a WeChat failure to the OAuth error the client sees.
// The client's own misconfiguration (wrong appid or secret) is ours to fix,
// so it is a server_error, logged with the client it concerns.
func (g *wechatGrant) wechatError(ctx context.Context, clientID, appID string, err error) error {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		return err
	}
	var api *wechat.APIError
	if errors.As(err, &api) {
		switch api.Code {
		case wechat.CodeInvalidCode, wechat.CodeCodeUsed:
			return fosite.ErrInvalidGrant.WithHint("The WeChat code is invalid, expired or already used.").WithWrap(err)
		case wechat.CodeHighRisk:
			g.audit.WeChatRiskRefused(ctx, clientID, appID)
			return fosite.ErrAccessDenied.WithHint("WeChat refused this login as high-risk.").WithWrap(err)
		case wechat.CodeQuota:
			return ErrWeChatQuota.WithWrap(err)
		case wechat.CodeBusy:
			return fosite.ErrTemporarilyUnavailable.WithHint("WeChat is busy. Retry with a new code.").WithWrap(err)
		}
		g.log.ErrorContext(ctx, "wechat rejected the client's configuration", "client_id", clientID, "appid", appID, "op", api.Op, "errcode", api.Code)
		return fosite.ErrServerError.WithWrap(err)
	}
	if errors.Is(err, wechat.ErrUnavailable) {
		g.log.WarnContext(ctx, "wechat unavailable", "client_id", clientID, "appid", appID, "err", err)
		return fosite.ErrTemporarilyUnavailable.WithHint("WeChat could not be reached. Retry with a new code.").WithWrap(err)
	}
	if errors.Is(err, context.Canceled) {
		// The client hung up: nothing failed here (the web layer logs the
		// request as 499).
		return fosite.ErrServerError.WithWrap(err)
	}
	g.log.ErrorContext(ctx, "wechat call failed", "client_id", clientID, "appid", appID, "err", err)
	return fosite.ErrServerError.WithWrap(err)
}

// storageError keeps fosite's retryable serialization failure and turns
// anything else into a server error without exposing it.
func storageError(err error) error {
	if errors.Is(err, fosite.ErrSerializationFailure) {
		// The code is already claimed (and spent at WeChat): a retry
		// needs a new one.
		return fosite.ErrTemporarilyUnavailable.WithHint("Please retry with a new code from wx.login().").WithWrap(err)
	}
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		return err
	}
	return fosite.ErrServerError.WithWrap(err)
}
