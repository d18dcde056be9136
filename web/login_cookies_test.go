package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// TestLoginCookiesOnHTTPS: on an https issuer both login cookies are
// __Host- cookies (Secure, Path=/, no Domain), HttpOnly and SameSite=Lax;
// a browser sending them back is recognised, and the same names without the
// prefix (which a sibling subdomain could have planted) are not.
func TestLoginCookiesOnHTTPS(t *testing.T) {
	t.Parallel()
	e := echo.New()
	k := cookies{secure: isHTTPS("https://id.example.com"), csrfKey: []byte(strings.Repeat("k", 32))}
	rec := httptest.NewRecorder()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/login", nil), rec)
	secret := k.browser(c)
	k.set(c, sessionCookie, "session-secret", browserCookieTTL)
	set := rec.Result().Cookies()
	if len(set) != 2 {
		t.Fatalf("cookies set: %v", set)
	}
	for _, ck := range set {
		if !strings.HasPrefix(ck.Name, "__Host-") || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode ||
			ck.Path != "/" || ck.Domain != "" {
			t.Errorf("cookie %+v: want __Host-, Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", ck)
		}
	}

	back := httptest.NewRequest(http.MethodPost, "/login/complete", strings.NewReader("csrf="+k.csrf(secret)))
	back.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	back.Header.Set("Origin", "https://id.example.com")
	for _, ck := range set {
		back.AddCookie(ck)
	}
	if !k.checkCSRF(e.NewContext(back, httptest.NewRecorder()), "https://id.example.com") {
		t.Error("the browser's own cookie and CSRF token were refused")
	}

	planted := httptest.NewRequest(http.MethodPost, "/login/complete", strings.NewReader("csrf="+k.csrf(secret)))
	planted.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	planted.AddCookie(&http.Cookie{Name: browserCookie, Value: secret})
	if k.checkCSRF(e.NewContext(planted, httptest.NewRecorder()), "https://id.example.com") {
		t.Error("a cookie without the __Host- prefix was accepted on an https issuer")
	}
	if got := k.get(e.NewContext(planted, httptest.NewRecorder()), sessionCookie); got != "" {
		t.Errorf("session read from an unprefixed cookie: %q", got)
	}
}
