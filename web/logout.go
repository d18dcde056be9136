package web

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/provider"
	"github.com/wxidp/wxidp/storage"
)

// logout is GET|POST /oauth2/logout (OpenID Connect RP-Initiated Logout
// 1.0). A request whose id_token_hint names the browser's own user (or
// that comes back from our confirmation form with its CSRF token) ends the
// browser's session at once; any other asks first, so a third-party page
// cannot log a user out. The answer is a redirect to the client's
// registered post_logout_redirect_uri (with state), or our own page.
func (l *login) logout(c echo.Context) error {
	ctx := c.Request().Context()
	if err := singleParams(c.Request()); err != nil {
		return l.errorPage(c, http.StatusBadRequest, err)
	}
	hint, clientID := c.FormValue("id_token_hint"), c.FormValue("client_id")
	redirect, state := c.FormValue("post_logout_redirect_uri"), c.FormValue("state")
	req, err := l.flow.ParseLogout(ctx, hint, clientID, redirect, state)
	if err != nil {
		return l.logoutError(c, err)
	}
	secret := l.cookies.get(c, sessionCookie)
	sess, err := l.flow.BrowserLogin(ctx, secret)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return l.errorPage(c, http.StatusServiceUnavailable, err)
	}
	confirmed := c.Request().Method == http.MethodPost && l.cookies.checkCSRF(c, l.issuer)
	hinted := req.Subject != "" && (sess == nil || sess.UserID == req.Subject)
	if sess != nil && !confirmed && !hinted {
		tx := textFor(c.Request().Header.Get("Accept-Language"))
		params := map[string]string{}
		for k, v := range map[string]string{"id_token_hint": hint, "client_id": clientID,
			"post_logout_redirect_uri": redirect, "state": state} {
			if v != "" {
				params[k] = v
			}
		}
		return l.render(c, http.StatusOK, "message.html", map[string]any{
			"T": tx, "Kind": "logout", "Title": tx.LogoutTitle, "Detail": tx.LogoutAsk,
			"Logout": params, "Confirm": true, "CSRF": l.cookies.csrf(l.cookies.browser(c)),
		})
	}
	if sess != nil {
		if err := l.flow.EndBrowserLogin(ctx, secret); err != nil {
			return l.errorPage(c, http.StatusServiceUnavailable, err)
		}
	}
	l.cookies.clear(c, sessionCookie)
	if req.RedirectURI != "" {
		u, err := url.Parse(req.RedirectURI)
		if err != nil {
			return l.logoutError(c, errors.Join(provider.ErrBadLogout, err))
		}
		if req.State != "" {
			q := u.Query()
			q.Set("state", req.State)
			u.RawQuery = q.Encode()
		}
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return c.Redirect(http.StatusSeeOther, u.String())
	}
	tx := textFor(c.Request().Header.Get("Accept-Language"))
	return l.render(c, http.StatusOK, "message.html", map[string]any{
		"T": tx, "Kind": "logged-out", "Title": tx.LogoutTitle, "Detail": tx.LoggedOut,
	})
}

func (l *login) logoutError(c echo.Context, err error) error {
	if !errors.Is(err, provider.ErrBadLogout) {
		return l.errorPage(c, http.StatusServiceUnavailable, err)
	}
	tx := textFor(c.Request().Header.Get("Accept-Language"))
	// Our own sentences (logout.go in provider): no token or secret.
	detail := err.Error()
	return l.render(c, http.StatusBadRequest, "message.html", map[string]any{
		"T": tx, "Kind": "error", "Title": tx.ErrorTitle, "Detail": detail,
	})
}
