package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/provider"
	"github.com/wxidp/wxidp/provider/scan"
	"github.com/wxidp/wxidp/ratelimit"
	"github.com/wxidp/wxidp/storage"
)

// LoginFlow is what scan-to-login's browser side needs from the provider.
type LoginFlow interface {
	ParseAuthorize(ctx context.Context, r *http.Request) (fosite.AuthorizeRequester, error)
	AuthorizeFromSession(ctx context.Context, ar fosite.AuthorizeRequester, s *storage.BrowserSession) (fosite.AuthorizeResponder, error)
	WriteAuthorizeError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error)
	WriteAuthorizeResponse(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, resp fosite.AuthorizeResponder)
	StartLogin(ctx context.Context, ar fosite.AuthorizeRequester, b provider.Browser) (*storage.LoginTicket, error)
	RenewLogin(ctx context.Context, ticket string, b provider.Browser) (*storage.LoginTicket, error)
	BrowserTicket(ctx context.Context, ticket, secret string) (*storage.LoginTicket, error)
	TicketClient(ctx context.Context, t *storage.LoginTicket) (*storage.Client, error)
	LoginPicture(ctx context.Context, ticket, secret string) (scan.Picture, error)
	CompleteLogin(ctx context.Context, ticket, secret string) (*provider.Completion, error)
	BrowserLogin(ctx context.Context, secret string) (*storage.BrowserSession, error)
	EndBrowserLogin(ctx context.Context, secret string) error
	ParseLogout(ctx context.Context, hint, clientID, redirectURI, state string) (*provider.Logout, error)
	SessionSatisfies(ar fosite.AuthorizeRequester, authTime, now time.Time) bool
	Now() time.Time
}

//go:embed login_assets
var loginAssets embed.FS

var loginTemplates = template.Must(template.ParseFS(loginAssets, "login_assets/*.html"))

// pageCSP lets a login page load its own script, style and QR picture and
// poll its own origin, nothing else: no inline script, no framing. There
// is no form-action: the completing form is answered by a redirect to the
// client, which form-action would have to list.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"

type login struct {
	flow    LoginFlow
	issuer  string
	cookies cookies
	limits  RateLimit
	log     interface {
		ErrorContext(ctx context.Context, msg string, args ...any)
	}
}

func registerLogin(e *echo.Echo, l *login, limits []echo.MiddlewareFunc) {
	// GET only: even HEAD would create a ticket or issue a code.
	e.GET(provider.AuthorizePath, l.authorize, limits...)
	e.GET("/login", l.page, limits...)
	e.GET("/login/status", l.status, limits...)
	e.GET("/login/qr", l.picture, limits...)
	e.POST("/login/complete", l.complete, limits...)
	e.POST("/login/renew", l.renew, limits...)
	getAndHead(e, scan.ScanPath, l.scanInfo)
	getAndHead(e, "/login/assets/:file", l.asset)
	e.GET(provider.LogoutPath, l.logout, limits...)
	e.POST(provider.LogoutPath, l.logout, limits...)
}

func (l *login) browserOf(c echo.Context, secret string) provider.Browser {
	return provider.Browser{Secret: secret, SourceIP: c.RealIP(), UserAgent: c.Request().UserAgent()}
}

// authorize is GET /oauth2/auth: a request the browser's login satisfies
// is answered at once; otherwise it waits on a new ticket at /login.
func (l *login) authorize(c echo.Context) error {
	ctx := c.Request().Context()
	r := c.Request()
	if err := singleParams(r); err != nil {
		return l.errorPage(c, http.StatusBadRequest, err)
	}
	ar, err := l.flow.ParseAuthorize(ctx, r)
	if err != nil {
		return l.authorizeError(c, ar, err)
	}
	if sess, err := l.flow.BrowserLogin(ctx, l.cookies.get(c, sessionCookie)); err == nil {
		if l.flow.SessionSatisfies(ar, sess.AuthTime, l.flow.Now()) {
			resp, err := l.flow.AuthorizeFromSession(ctx, ar, sess)
			if err != nil {
				return l.authorizeError(c, ar, err)
			}
			l.flow.WriteAuthorizeResponse(ctx, c.Response(), ar, resp)
			return nil
		}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return l.authorizeError(c, ar, err)
	}
	if provider.PromptNone(ar) {
		return l.authorizeError(c, ar, provider.ErrLoginRequired)
	}
	if d, ok := l.limits.allowTicket(c); !ok {
		return l.tooMany(c, d)
	}
	t, err := l.flow.StartLogin(ctx, ar, l.browserOf(c, l.cookies.browser(c)))
	if err != nil {
		return l.authorizeError(c, ar, err)
	}
	return c.Redirect(http.StatusSeeOther, "/login?ticket="+t.ID)
}

// authorizeError redirects an error to a client whose redirect_uri was
// verified; anything else is a page, never a redirect.
func (l *login) authorizeError(c echo.Context, ar fosite.AuthorizeRequester, err error) error {
	if ar == nil || !ar.IsRedirectURIValid() || errors.Is(err, provider.ErrBadRedirect) {
		return l.errorPage(c, fosite.ErrorToRFC6749Error(err).CodeField, err)
	}
	if fosite.ErrorToRFC6749Error(err).CodeField >= http.StatusInternalServerError {
		l.log.ErrorContext(c.Request().Context(), "authorization endpoint", "request_id", requestID(c), "err", err)
	}
	l.flow.WriteAuthorizeError(c.Request().Context(), c.Response(), ar, err)
	return nil
}

// page is GET /login: the QR code and the ticket's state.
func (l *login) page(c echo.Context) error {
	ctx := c.Request().Context()
	secret := l.cookies.get(c, browserCookie)
	t, err := l.flow.BrowserTicket(ctx, c.QueryParam("ticket"), secret)
	if err != nil {
		return l.ticketError(c, err, "")
	}
	client, err := l.flow.TicketClient(ctx, t)
	if err != nil {
		return l.ticketError(c, err, "")
	}
	expiresIn := int(t.ExpiresAt.Sub(l.flow.Now()).Seconds())
	return l.render(c, http.StatusOK, "login.html", map[string]any{
		"T": textFor(c.Request().Header.Get("Accept-Language")), "Ticket": t.ID, "ClientName": client.Name,
		"CSRF": l.cookies.csrf(secret), "ExpiresIn": max(expiresIn, 0),
	})
}

// ticketStatus is what the page polls; "expired" covers a ticket past its
// time in any state but consumed.
func ticketStatus(t *storage.LoginTicket, now time.Time) string {
	if t.State != storage.TicketConsumed && t.Expired(now) {
		return "expired"
	}
	return string(t.State)
}

// status is GET /login/status, polled by the page.
func (l *login) status(c echo.Context) error {
	t, err := l.flow.BrowserTicket(c.Request().Context(), c.QueryParam("ticket"), l.cookies.get(c, browserCookie))
	if errors.Is(err, storage.ErrNotFound) {
		return newAPIError(http.StatusNotFound, "not_found", "No such login ticket for this browser.")
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, map[string]any{
		"state": ticketStatus(t, l.flow.Now()), "expires_at": t.ExpiresAt.Unix(),
	})
}

// picture is GET /login/qr: the ticket's QR picture.
func (l *login) picture(c echo.Context) error {
	pic, err := l.flow.LoginPicture(c.Request().Context(), c.QueryParam("ticket"), l.cookies.get(c, browserCookie))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return newAPIError(http.StatusNotFound, "not_found", "No such login ticket for this browser.")
	case errors.Is(err, storage.ErrExpired):
		return newAPIError(http.StatusGone, "expired_ticket", "The login code has expired.")
	case errors.Is(err, storage.ErrConflict):
		return newAPIError(http.StatusConflict, "ticket_conflict", "The login code was scanned already.")
	case errors.Is(err, scan.ErrNoPicture):
		// WeChat is failing: the page offers a new code; never a 500.
		l.log.ErrorContext(c.Request().Context(), "login code picture", "request_id", requestID(c), "err", err)
		c.Response().Header().Set(retryAfter, retryAfterUnavailable)
		return newAPIError(http.StatusServiceUnavailable, "temporarily_unavailable", "The login code cannot be drawn right now.")
	case err != nil:
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.Blob(http.StatusOK, pic.ContentType, pic.Image)
}

// complete is POST /login/complete, submitted by the page once the ticket
// is decided.
func (l *login) complete(c echo.Context) error {
	if !l.cookies.checkCSRF(c, l.issuer) {
		return l.errorPage(c, http.StatusForbidden, errCSRF)
	}
	ctx := c.Request().Context()
	ticket := c.FormValue("ticket")
	done, err := l.flow.CompleteLogin(ctx, ticket, l.cookies.get(c, browserCookie))
	switch {
	case errors.Is(err, storage.ErrConflict):
		// Not decided yet (a submit without script): back to waiting.
		if t, terr := l.flow.BrowserTicket(ctx, ticket, l.cookies.get(c, browserCookie)); terr == nil &&
			(t.State == storage.TicketWaiting || t.State == storage.TicketScanned) {
			return c.Redirect(http.StatusSeeOther, "/login?ticket="+t.ID)
		}
		return l.ticketError(c, err, "")
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrExpired):
		return l.ticketError(c, err, ticket)
	case err != nil && done != nil:
		return l.authorizeError(c, done.Request, err)
	case err != nil:
		return l.ticketError(c, err, "")
	}
	l.cookies.set(c, sessionCookie, done.SessionSecret, done.SessionTTL)
	l.flow.WriteAuthorizeResponse(ctx, c.Response(), done.Request, done.Response)
	return nil
}

// renew is POST /login/renew: a new ticket for the same request.
func (l *login) renew(c echo.Context) error {
	if !l.cookies.checkCSRF(c, l.issuer) {
		return l.errorPage(c, http.StatusForbidden, errCSRF)
	}
	if d, ok := l.limits.allowTicket(c); !ok {
		return l.tooMany(c, d)
	}
	secret := l.cookies.get(c, browserCookie)
	t, err := l.flow.RenewLogin(c.Request().Context(), c.FormValue("ticket"), l.browserOf(c, secret))
	if err != nil {
		return l.ticketError(c, err, "")
	}
	return c.Redirect(http.StatusSeeOther, "/login?ticket="+t.ID)
}

// tooMany is the page of a source that opened too many logins: 429 with
// Retry-After, and nothing stored.
func (l *login) tooMany(c echo.Context, d ratelimit.Decision) error {
	c.Response().Header().Set(retryAfter, strconv.Itoa(d.RetryAfterSeconds()))
	tx := textFor(c.Request().Header.Get("Accept-Language"))
	return l.render(c, http.StatusTooManyRequests, "message.html", map[string]any{
		"T": tx, "Kind": "error", "Title": tx.ErrorTitle, "Detail": tx.TooMany,
	})
}

// scanInfo is where a plain QR code leads a phone that is not in the
// mini-program: it says how to scan.
func (l *login) scanInfo(c echo.Context) error {
	tx := textFor(c.Request().Header.Get("Accept-Language"))
	return l.render(c, http.StatusOK, "message.html", map[string]any{
		"T": tx, "Kind": "scan", "Title": tx.ScanPageTitle, "Detail": tx.ScanPageBody,
	})
}

func (l *login) asset(c echo.Context) error {
	name := c.Param("file")
	var ctype string
	switch name {
	case "login.js":
		ctype = "text/javascript; charset=utf-8"
	case "login.css":
		ctype = "text/css; charset=utf-8"
	default:
		return echo.ErrNotFound
	}
	b, err := loginAssets.ReadFile("login_assets/" + name)
	if err != nil {
		return echo.ErrNotFound
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "public, max-age=300")
	return c.Blob(http.StatusOK, ctype, b)
}

var errCSRF = errors.New("the form is stale or was not sent by this site")

// ticketError shows a ticket that cannot go on; renew, when set, is a
// ticket of this browser the page may offer to replace.
func (l *login) ticketError(c echo.Context, err error, renew string) error {
	tx := textFor(c.Request().Header.Get("Accept-Language"))
	status, detail := http.StatusBadRequest, tx.StartAgain
	switch {
	case errors.Is(err, storage.ErrUnavailable):
		return l.errorPage(c, http.StatusServiceUnavailable, err)
	case errors.Is(err, storage.ErrExpired):
		status, detail = http.StatusGone, tx.Expired
	case errors.Is(err, storage.ErrNotFound):
		status, renew = http.StatusNotFound, ""
	case errors.Is(err, storage.ErrConflict):
		status, renew = http.StatusConflict, ""
	}
	data := map[string]any{"T": tx, "Kind": "error", "Title": tx.ErrorTitle, "Detail": detail}
	if secret := l.cookies.get(c, browserCookie); renew != "" && scan.ValidSecret(secret) {
		data["Renew"], data["CSRF"] = renew, l.cookies.csrf(secret)
	}
	return l.render(c, status, "message.html", data)
}

// errorPage shows an error that must not be redirected; a storage outage
// is 503 with Retry-After.
func (l *login) errorPage(c echo.Context, status int, err error) error {
	tx := textFor(c.Request().Header.Get("Accept-Language"))
	detail := tx.StartAgain
	if errors.Is(err, storage.ErrUnavailable) || status == http.StatusServiceUnavailable {
		status = http.StatusServiceUnavailable
		c.Response().Header().Set(retryAfter, retryAfterUnavailable)
		detail = tx.Unreach
	} else if rfc := fosite.ErrorToRFC6749Error(err); rfc.HintField != "" && status < 500 {
		detail = rfc.HintField // our own hints: plain sentences, no secrets
	} else if status >= 500 {
		l.log.ErrorContext(c.Request().Context(), "login page", "request_id", requestID(c), "err", err)
	}
	if status < 400 || status == http.StatusUnauthorized {
		status = http.StatusBadRequest // a page challenges no credentials
	}
	return l.render(c, status, "message.html", map[string]any{"T": tx, "Kind": "error", "Title": tx.ErrorTitle, "Detail": detail})
}

func (l *login) render(c echo.Context, status int, name string, data map[string]any) error {
	var buf bytes.Buffer
	if err := loginTemplates.ExecuteTemplate(&buf, name, data); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", pageCSP)
	// no-referrer (the default here) makes Chromium send "Origin: null"
	// with the page's own forms; same-origin keeps the Origin that the
	// CSRF check compares, and still sends no Referer to other sites.
	h.Set("Referrer-Policy", "same-origin")
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	return c.HTMLBlob(status, buf.Bytes())
}
