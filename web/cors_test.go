package web

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
)

const (
	spaOrigin   = "https://spa.example.com"
	otherOrigin = "https://other.example.com"
	evilOrigin  = "https://evil.example.com"
)

// newCORSServer is the CORS policy over routes that answer 200 (401 for
// /userinfo, to show error answers are readable too), with two clients:
// spa (spaOrigin) and other (otherOrigin).
func newCORSServer(t *testing.T) *echo.Echo {
	t.Helper()
	store := memory.New()
	for id, origin := range map[string]string{"spa": spaOrigin, "other": otherOrigin} {
		c := &storage.Client{ID: id, TokenEndpointAuthMethod: "client_secret_basic", AllowedCORSOrigins: []string{origin}}
		if err := store.CreateClient(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := newEcho(log, false, noMetrics)
	ok := func(c echo.Context) error { return c.NoContent(http.StatusOK) }
	e.POST("/oauth2/token", ok)
	e.POST("/oauth2/revoke", ok)
	e.POST("/oauth2/introspect", ok)
	userinfo := func(echo.Context) error { return newAPIError(http.StatusUnauthorized, "invalid_token", "no") }
	getAndHead(e, "/userinfo", userinfo)
	e.POST("/userinfo", userinfo)
	getAndHead(e, "/.well-known/jwks.json", ok)
	getAndHead(e, "/.well-known/openid-configuration", ok)
	registerCORS(e, store, log)
	return e
}

// fakeJWT is a token whose payload names clientID; CORS reads it unverified.
func fakeJWT(clientID string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"client_id":"`+clientID+`","sub":"u"}`)) + ".c2ln"
}

func TestCORSActualRequests(t *testing.T) {
	t.Parallel()
	e := newCORSServer(t)
	form := func(path, clientID string) func() *http.Request {
		return func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(url.Values{"client_id": {clientID}}.Encode()))
			r.Header.Set(echo.HeaderContentType, echo.MIMEApplicationForm)
			return r
		}
	}
	basic := func(clientID string) func() *http.Request {
		return func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader("grant_type=client_credentials"))
			r.Header.Set(echo.HeaderContentType, echo.MIMEApplicationForm)
			r.SetBasicAuth(url.QueryEscape(clientID), "secret")
			return r
		}
	}
	bearer := func(method, token string) func() *http.Request {
		return func() *http.Request {
			r := httptest.NewRequest(method, "/userinfo", nil)
			r.Header.Set(echo.HeaderAuthorization, "Bearer "+token)
			return r
		}
	}
	plain := func(method, path string) func() *http.Request {
		return func() *http.Request { return httptest.NewRequest(method, path, nil) }
	}
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		origin string
		want   string // Access-Control-Allow-Origin
		vary   bool
	}{
		{"token/form/registered", form("/oauth2/token", "spa"), spaOrigin, spaOrigin, true},
		{"token/basic/registered", basic("spa"), spaOrigin, spaOrigin, true},
		{"token/unregistered", form("/oauth2/token", "spa"), evilOrigin, "", true},
		{"token/another client's origin", form("/oauth2/token", "spa"), otherOrigin, "", true},
		{"token/basic/another client's origin", basic("other"), spaOrigin, "", true},
		{"token/unknown client", form("/oauth2/token", "nope"), spaOrigin, "", true},
		{"token/no client", form("/oauth2/token", ""), spaOrigin, "", true},
		{"token/no origin", form("/oauth2/token", "spa"), "", "", true},
		{"token/null origin", form("/oauth2/token", "spa"), "null", "", true},
		{"token/origin with a path", form("/oauth2/token", "spa"), spaOrigin + "/", "", true},
		{"revoke/registered", form("/oauth2/revoke", "other"), otherOrigin, otherOrigin, true},
		{"revoke/another client's origin", form("/oauth2/revoke", "other"), spaOrigin, "", true},
		{"userinfo/GET/registered", bearer(http.MethodGet, fakeJWT("spa")), spaOrigin, spaOrigin, true},
		{"userinfo/POST/registered", bearer(http.MethodPost, fakeJWT("other")), otherOrigin, otherOrigin, true},
		{"userinfo/another client's origin", bearer(http.MethodGet, fakeJWT("other")), spaOrigin, "", true},
		{"userinfo/opaque token", bearer(http.MethodGet, "ory_at_abc.def"), spaOrigin, "", true},
		{"userinfo/junk token", bearer(http.MethodGet, "a.%%%.c"), spaOrigin, "", true},
		// Not a browser endpoint: no CORS at all.
		{"introspect", form("/oauth2/introspect", "spa"), spaOrigin, "", false},
		// Public documents: any origin, with or without Origin.
		{"jwks", plain(http.MethodGet, "/.well-known/jwks.json"), evilOrigin, "*", false},
		{"jwks/HEAD", plain(http.MethodHead, "/.well-known/jwks.json"), "", "*", false},
		{"discovery", plain(http.MethodGet, "/.well-known/openid-configuration"), spaOrigin, "*", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req()
			if tc.origin != "" {
				r.Header.Set(echo.HeaderOrigin, tc.origin)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, r)
			if got := rec.Header().Get(echo.HeaderAccessControlAllowOrigin); got != tc.want {
				t.Errorf("%d: Access-Control-Allow-Origin %q, want %q", rec.Code, got, tc.want)
			}
			if vary := strings.Contains(rec.Header().Get(echo.HeaderVary), echo.HeaderOrigin); vary != tc.vary {
				t.Errorf("Vary %q, want Origin in it: %v", rec.Header().Get(echo.HeaderVary), tc.vary)
			}
			if rec.Header().Get(echo.HeaderAccessControlAllowCredentials) != "" {
				t.Error("Access-Control-Allow-Credentials sent: no endpoint uses cookies")
			}
		})
	}
}

func TestCORSPreflight(t *testing.T) {
	t.Parallel()
	e := newCORSServer(t)
	for _, tc := range []struct {
		name, path, origin, method string
		wantOrigin, wantMethods    string
	}{
		// A preflight names no client: an origin any client registered passes.
		{"token/spa", "/oauth2/token", spaOrigin, "POST", spaOrigin, "POST"},
		{"token/other", "/oauth2/token", otherOrigin, "POST", otherOrigin, "POST"},
		{"token/unregistered", "/oauth2/token", evilOrigin, "POST", "", ""},
		{"token/null", "/oauth2/token", "null", "POST", "", ""},
		{"revoke", "/oauth2/revoke", spaOrigin, "POST", spaOrigin, "POST"},
		{"userinfo", "/userinfo", spaOrigin, "GET", spaOrigin, "GET, POST"},
		{"userinfo/unregistered", "/userinfo", evilOrigin, "GET", "", ""},
		{"jwks", "/.well-known/jwks.json", evilOrigin, "GET", "*", "GET"},
		{"discovery", "/.well-known/openid-configuration", evilOrigin, "GET", "*", "GET"},
		// Without Access-Control-Request-Method it is no preflight.
		{"plain OPTIONS", "/oauth2/token", spaOrigin, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodOptions, tc.path, nil)
			r.Header.Set(echo.HeaderOrigin, tc.origin)
			if tc.method != "" {
				r.Header.Set(echo.HeaderAccessControlRequestMethod, tc.method)
				r.Header.Set(echo.HeaderAccessControlRequestHeaders, "authorization,content-type")
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, r)
			h := rec.Header()
			if rec.Code != http.StatusNoContent || h.Get(echo.HeaderAllow) == "" {
				t.Fatalf("%d (Allow %q), want 204 with Allow", rec.Code, h.Get(echo.HeaderAllow))
			}
			if got := h.Get(echo.HeaderAccessControlAllowOrigin); got != tc.wantOrigin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.wantOrigin)
			}
			if got := h.Get(echo.HeaderAccessControlAllowMethods); got != tc.wantMethods {
				t.Errorf("Access-Control-Allow-Methods %q, want %q", got, tc.wantMethods)
			}
			if tc.wantOrigin == "" {
				return
			}
			if h.Get(echo.HeaderAccessControlMaxAge) != corsMaxAge {
				t.Errorf("Access-Control-Max-Age %q, want %s", h.Get(echo.HeaderAccessControlMaxAge), corsMaxAge)
			}
			if allowH := h.Get(echo.HeaderAccessControlAllowHeaders); tc.wantOrigin != "*" && allowH != "Authorization, Content-Type" {
				t.Errorf("Access-Control-Allow-Headers %q", allowH)
			}
		})
	}
}
