package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/provider/scan"
)

// Two cookies, both HttpOnly, SameSite=Lax, host-only, Path=/, and, on an
// https issuer, Secure with the __Host- prefix (which browsers accept only
// with Secure; on a plain-http dev issuer the prefix is left off):
//   - the browser cookie binds login tickets to the browser that opened
//     the page, and keys its CSRF tokens;
//   - the session cookie is the browser's login here (stored server-side
//     by the hash of its value), so a second authorization needs no scan.
const (
	browserCookie = "wxidp_browser"
	sessionCookie = "wxidp_session"
	// browserCookieTTL outlives any ticket; it is renewed with each.
	browserCookieTTL = 24 * time.Hour
)

type cookies struct {
	secure  bool
	csrfKey []byte
}

func (k cookies) name(base string) string {
	if k.secure {
		return "__Host-" + base
	}
	return base
}

func (k cookies) set(c echo.Context, base, value string, ttl time.Duration) {
	c.SetCookie(&http.Cookie{
		Name: k.name(base), Value: value, Path: "/", MaxAge: int(ttl.Seconds()),
		Secure: k.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func (k cookies) clear(c echo.Context, base string) {
	c.SetCookie(&http.Cookie{
		Name: k.name(base), Value: "", Path: "/", MaxAge: -1,
		Secure: k.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func (k cookies) get(c echo.Context, base string) string {
	ck, err := c.Cookie(k.name(base))
	if err != nil {
		return ""
	}
	return ck.Value
}

// browser returns the browser secret, setting a new cookie when there is
// none (or it is malformed).
func (k cookies) browser(c echo.Context) string {
	v := k.get(c, browserCookie)
	if !scan.ValidSecret(v) {
		v = scan.NewSecret()
	}
	k.set(c, browserCookie, v, browserCookieTTL)
	return v
}

// csrf is the token a form of this browser carries: an HMAC of its
// browser secret, so a page of another site can neither read nor forge it.
func (k cookies) csrf(browserSecret string) string {
	m := hmac.New(sha256.New, k.csrfKey)
	m.Write([]byte("wxidp/csrf\x00"))
	m.Write([]byte(browserSecret))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF accepts a state-changing browser request only with the CSRF
// token of this browser's cookie and, when the browser names one, an
// Origin of the issuer's own.
func (k cookies) checkCSRF(c echo.Context, issuer string) bool {
	if o := c.Request().Header.Get("Origin"); o != "" && o != originOf(issuer) {
		return false
	}
	secret := k.get(c, browserCookie)
	if !scan.ValidSecret(secret) {
		return false
	}
	return hmac.Equal([]byte(c.FormValue("csrf")), []byte(k.csrf(secret)))
}

func originOf(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
