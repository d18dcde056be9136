package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/provider"
	"github.com/wxidp/wxidp/storage"
)

// AccountAPI is the self-service account (provider.Provider): a user's
// profile, and erasing the account.
type AccountAPI interface {
	Account(ctx context.Context, token string) (*provider.Account, error)
}

type accountAPI struct {
	api      AccountAPI
	rl       RateLimit
	recorder *audit.Recorder
}

func registerAccount(e *echo.Echo, a *accountAPI, limits []echo.MiddlewareFunc) {
	e.PATCH("/account", a.patch, limits...)
	e.DELETE("/account", a.delete, limits...)
}

// Profile limits: a nickname is a display name, a picture an https URL.
const (
	maxNicknameRunes = 64
	maxPictureBytes  = 2048
)

// profileInput is PATCH /account's body: an absent or null field keeps its
// value, "" clears it.
type profileInput struct {
	Nickname *string `json:"nickname"`
	Picture  *string `json:"picture"`
}

// account authenticates the bearer token under the bearer limits, before
// any change.
func (a *accountAPI) account(c echo.Context) (*provider.Account, error) {
	var acct *provider.Account
	err := a.rl.bearer(c, func(tok string) (map[string]any, error) {
		var err error
		if acct, err = a.api.Account(c.Request().Context(), tok); err != nil {
			return nil, err
		}
		return map[string]any{"sub": acct.Subject()}, nil
	})
	if err != nil {
		return nil, accountError(c, err)
	}
	return acct, nil
}

func (a *accountAPI) patch(c echo.Context) error {
	if !strings.HasPrefix(c.Request().Header.Get(echo.HeaderContentType), echo.MIMEApplicationJSON) {
		return newAPIError(http.StatusUnsupportedMediaType, "invalid_request", "The body must be a JSON object (application/json).")
	}
	acct, err := a.account(c)
	if err != nil {
		return err
	}
	var in profileInput
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	patch, err := validateProfile(in)
	if err != nil {
		return err
	}
	out, err := acct.UpdateProfile(c.Request().Context(), patch)
	if err != nil {
		return accountError(c, err)
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, out)
}

func (a *accountAPI) delete(c echo.Context) error {
	acct, err := a.account(c)
	if err != nil {
		return err
	}
	if err := acct.Delete(c.Request().Context()); err != nil {
		return accountError(c, err)
	}
	// The trail keeps the event and the erased subject, nothing more: not
	// even the address the person deleted their account from.
	a.recorder.Record(c.Request().Context(), audit.Event{Type: audit.UserDeleted, Actor: audit.ActorUser,
		Target: acct.Subject(), Outcome: audit.Success, NoSource: true})
	return c.NoContent(http.StatusNoContent)
}

// validateProfile checks the values a user may set: a nickname of at most
// 64 characters without control or invisible formatting characters and
// without surrounding white space, and a picture that is an absolute https
// URL without credentials.
func validateProfile(in profileInput) (storage.ProfilePatch, error) {
	if in.Nickname == nil && in.Picture == nil {
		return storage.ProfilePatch{}, badInput("The body sets neither nickname nor picture.")
	}
	if n := in.Nickname; n != nil && *n != "" {
		switch {
		case utf8.RuneCountInString(*n) > maxNicknameRunes:
			return storage.ProfilePatch{}, badInput(fmt.Sprintf("nickname is longer than %d characters.", maxNicknameRunes))
		case strings.TrimSpace(*n) != *n:
			return storage.ProfilePatch{}, badInput("nickname must not begin or end with white space.")
		case strings.IndexFunc(*n, invisible) >= 0:
			return storage.ProfilePatch{}, badInput("nickname contains a control or formatting character.")
		}
	}
	if p := in.Picture; p != nil && *p != "" {
		if len(*p) > maxPictureBytes {
			return storage.ProfilePatch{}, badInput("picture is longer than " + strconv.Itoa(maxPictureBytes) + " bytes.")
		}
		u, err := url.Parse(*p)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" ||
			strings.IndexFunc(*p, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return storage.ProfilePatch{}, badInput("picture must be an absolute https URL without credentials or spaces.")
		}
	}
	return storage.ProfilePatch{Nickname: in.Nickname, Picture: in.Picture}, nil
}

// invisible reports control characters and formatting ones (bidirectional
// overrides that make a name read as another), except the zero-width
// joiner emoji sequences need.
func invisible(r rune) bool {
	return r != '\u200d' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError)
}

// badInput is a 400 invalid_request naming what is wrong.
func badInput(msg string) error { return newAPIError(http.StatusBadRequest, "invalid_request", msg) }

// accountError answers the account endpoints' refusals in RFC 6750 (and
// RFC 9470 for a login that is too old) shape; the rest goes to vaultError
// (outages: 503 with Retry-After).
func accountError(c echo.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, provider.ErrLoginNotRecent):
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, fmt.Sprintf(
			`Bearer error="insufficient_user_authentication", error_description="A login within the last %d minutes is required", max_age=%d`,
			int(provider.RecentLogin.Minutes()), int(provider.RecentLogin.Seconds())))
		return newAPIError(http.StatusUnauthorized, "insufficient_user_authentication",
			fmt.Sprintf("Deleting the account needs a login within the last %d minutes: log in again (wx.login) and retry with the new access token.", int(provider.RecentLogin.Minutes())))
	case errors.Is(err, provider.ErrInsufficientScope):
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="insufficient_scope", scope="profile"`)
		return newAPIError(http.StatusForbidden, "insufficient_scope", "Changing the profile needs an access token with scope profile.")
	case errors.Is(err, provider.ErrNotAUser):
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="insufficient_scope"`)
		return newAPIError(http.StatusForbidden, "insufficient_scope", "Only the user's own access token from the mini-program may change or delete the account.")
	}
	return vaultError(c, err)
}
