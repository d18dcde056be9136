package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/provider"
)

// VaultAPI is the session_key vault (provider.Vault): a mini-program's
// backend uses the user's WeChat session_key through wxidp, which never
// hands it out.
type VaultAPI interface {
	Vault(ctx context.Context, token string) (*provider.VaultSession, error)
}

type vaultAPI struct {
	api VaultAPI
	rl  RateLimit
}

func registerVault(e *echo.Echo, v *vaultAPI, limits []echo.MiddlewareFunc) {
	e.POST("/wechat/decrypt", v.decrypt, limits...)
	e.POST("/wechat/verify-signature", v.verifySignature, limits...)
	e.POST("/wechat/session", v.renew, limits...)
}

// vaultInput is every field the vault endpoints take, as a form or as JSON.
type vaultInput struct {
	EncryptedData string `json:"encryptedData"`
	IV            string `json:"iv"`
	RawData       string `json:"rawData"`
	Signature     string `json:"signature"`
	Code          string `json:"code"`
}

func (v *vaultAPI) input(c echo.Context) (vaultInput, error) {
	var in vaultInput
	r := c.Request()
	if strings.HasPrefix(r.Header.Get(echo.HeaderContentType), echo.MIMEApplicationJSON) {
		return in, decodeJSON(c, &in)
	}
	if err := singleParams(r); err != nil {
		return in, err
	}
	f := r.PostForm
	return vaultInput{EncryptedData: f.Get("encryptedData"), IV: f.Get("iv"), RawData: f.Get("rawData"),
		Signature: f.Get("signature"), Code: f.Get("code")}, nil
}

// session authenticates the bearer token under the bearer limits, then
// reads the input.
func (v *vaultAPI) session(c echo.Context) (*provider.VaultSession, vaultInput, error) {
	var s *provider.VaultSession
	err := v.rl.bearer(c, func(tok string) (map[string]any, error) {
		var err error
		if s, err = v.api.Vault(c.Request().Context(), tok); err != nil {
			return nil, err
		}
		return map[string]any{"sub": s.Subject}, nil
	})
	if err != nil {
		return nil, vaultInput{}, vaultError(c, err)
	}
	in, err := v.input(c)
	return s, in, err
}

func (v *vaultAPI) decrypt(c echo.Context) error {
	s, in, err := v.session(c)
	if err != nil {
		return err
	}
	plain, err := s.Decrypt(c.Request().Context(), in.EncryptedData, in.IV)
	if err != nil {
		return vaultError(c, err)
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSONBlob(http.StatusOK, json.RawMessage(plain))
}

func (v *vaultAPI) verifySignature(c echo.Context) error {
	s, in, err := v.session(c)
	if err != nil {
		return err
	}
	ok, err := s.VerifySignature(c.Request().Context(), in.RawData, in.Signature)
	if err != nil {
		return vaultError(c, err)
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, map[string]bool{"valid": ok})
}

func (v *vaultAPI) renew(c echo.Context) error {
	s, in, err := v.session(c)
	if err != nil {
		return err
	}
	if err := s.RenewSessionKey(c.Request().Context(), in.Code); err != nil {
		return vaultError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

// vaultError answers the vault's refusals; anything else goes to the
// error handler (an outage is a 503 there).
func vaultError(c echo.Context, err error) error {
	var bad *provider.VaultBadInput
	var rfc *fosite.RFC6749Error
	switch {
	case errors.As(err, &bad):
		return newAPIError(http.StatusBadRequest, "invalid_request", bad.Reason)
	case errors.Is(err, provider.ErrInvalidToken):
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
		return newAPIError(http.StatusUnauthorized, "invalid_token", "The access token is missing, invalid, expired or revoked.")
	case errors.Is(err, provider.ErrNotVaultToken):
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="insufficient_scope", scope="wechat_data"`)
		return newAPIError(http.StatusForbidden, "insufficient_scope", "Only a mini-program user's access token with the wechat_data scope may use the session_key vault.")
	case errors.Is(err, provider.ErrSessionKeyExpired):
		return newAPIError(http.StatusConflict, "session_key_expired", "WeChat no longer accepts the stored session_key: call wx.login() and POST the code to /wechat/session.")
	case errors.Is(err, provider.ErrOtherIdentity):
		return newAPIError(http.StatusConflict, "identity_mismatch", "The code from wx.login() belongs to another WeChat user than the access token.")
	case errors.As(err, &rfc) && rfc.CodeField != http.StatusInternalServerError:
		if rfc.CodeField == http.StatusServiceUnavailable || rfc.CodeField == http.StatusTooManyRequests {
			c.Response().Header().Set(retryAfter, retryAfterUnavailable)
		}
		desc := rfc.HintField
		if desc == "" {
			desc = rfc.DescriptionField
		}
		return newAPIError(rfc.CodeField, rfc.ErrorField, desc)
	}
	return err
}
