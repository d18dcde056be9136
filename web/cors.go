package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/provider/clientreg"
	"github.com/wxidp/wxidp/storage"
)

// corsMaxAge is how long, in seconds, a browser may reuse a preflight
// answer: short, so an origin removed from a client stops working soon.
const corsMaxAge = "600"

// corsRoute is the CORS policy of one public route.
type corsRoute struct {
	methods []string // what the route answers, besides OPTIONS
	// anyOrigin: a public document (discovery, JWKS) any site may read.
	anyOrigin bool
	// clientOf names the client a request acts for; the origin must be
	// registered on it. Unauthenticated: CORS only decides whether the
	// browser may show the answer to the page, and the endpoint itself
	// authenticates the client or verifies the token.
	clientOf func(*http.Request) string
}

// cors applies the CORS policy of the public listener. The admin listener
// has none: browsers get no CORS header from it, ever.
type cors struct {
	origins *originCache // nil: no client allows any origin
	log     *slog.Logger
	routes  map[string]corsRoute // by route path
}

// registerCORS adds CORS to the public listener e: headers on the routes
// below (a middleware keyed by route path, so it sees the routes whatever
// their own middleware) and an OPTIONS route for each, for preflights.
func registerCORS(e *echo.Echo, origins CORSOrigins, log *slog.Logger) {
	get := []string{http.MethodGet, http.MethodHead}
	cs := &cors{log: log, routes: map[string]corsRoute{
		"/.well-known/openid-configuration": {methods: get, anyOrigin: true},
		"/.well-known/jwks.json":            {methods: get, anyOrigin: true},
		"/oauth2/token":                     {methods: []string{http.MethodPost}, clientOf: requestClientID},
		"/oauth2/revoke":                    {methods: []string{http.MethodPost}, clientOf: requestClientID},
		"/userinfo":                         {methods: []string{http.MethodGet, http.MethodHead, http.MethodPost}, clientOf: tokenClientID},
	}}
	if origins != nil {
		cs.origins = newOriginCache(origins)
	}
	e.Use(cs.headers)
	for path, rt := range cs.routes {
		e.OPTIONS(path, cs.preflight(rt))
	}
}

// headers sets the CORS headers of an actual (non-preflight) request. They
// are set before the handler runs, so error answers carry them too and a
// page can read why its request failed.
func (cs *cors) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		rt, ok := cs.routes[c.Path()]
		if !ok || !slices.Contains(rt.methods, r.Method) {
			return next(c)
		}
		h := c.Response().Header()
		if rt.anyOrigin {
			h.Set(echo.HeaderAccessControlAllowOrigin, "*")
			return next(c)
		}
		// The answer depends on Origin whether or not it is allowed.
		h.Add(echo.HeaderVary, echo.HeaderOrigin)
		origin := r.Header.Get(echo.HeaderOrigin)
		if origin == "" {
			return next(c)
		}
		if id := rt.clientOf(r); id != "" {
			// An outage denies here and lets the handler answer its 503.
			if ok, _ := cs.allowed(r.Context(), origin, id); ok {
				h.Set(echo.HeaderAccessControlAllowOrigin, origin)
				h.Set(echo.HeaderAccessControlExposeHeaders, "Retry-After, WWW-Authenticate")
			}
		}
		return next(c)
	}
}

// preflight answers OPTIONS. A preflight names no client (browsers send
// neither the body nor credentials), so the origin must be registered on
// some client; the actual request is then checked against its own client.
func (cs *cors) preflight(rt corsRoute) echo.HandlerFunc {
	allow := strings.Join(append(slices.Clone(rt.methods), http.MethodOptions), ", ")
	methods := strings.Join(slices.DeleteFunc(slices.Clone(rt.methods), func(m string) bool { return m == http.MethodHead }), ", ")
	return func(c echo.Context) error {
		r := c.Request()
		h := c.Response().Header()
		h.Set(echo.HeaderAllow, allow)
		if !rt.anyOrigin {
			h.Add(echo.HeaderVary, echo.HeaderOrigin)
		}
		origin := r.Header.Get(echo.HeaderOrigin)
		if origin == "" || r.Header.Get(echo.HeaderAccessControlRequestMethod) == "" {
			return c.NoContent(http.StatusNoContent) // a plain OPTIONS
		}
		if rt.anyOrigin {
			h.Set(echo.HeaderAccessControlAllowOrigin, "*")
			h.Set(echo.HeaderAccessControlAllowHeaders, "*") // no credentials here, so * means any
		} else {
			ok, err := cs.allowed(r.Context(), origin, "")
			if err != nil {
				return err // the database is unavailable: 503 with Retry-After
			}
			if !ok {
				return c.NoContent(http.StatusNoContent) // no CORS headers: the browser refuses
			}
			h.Set(echo.HeaderAccessControlAllowOrigin, origin)
			h.Set(echo.HeaderAccessControlAllowHeaders, "Authorization, Content-Type")
		}
		h.Set(echo.HeaderAccessControlAllowMethods, methods)
		h.Set(echo.HeaderAccessControlMaxAge, corsMaxAge)
		return c.NoContent(http.StatusNoContent)
	}
}

// allowed reports whether origin is registered on clientID ("" for any
// client). Its only error is storage.ErrUnavailable: any other failure is
// logged and denies, since a CORS check is never worth a 500.
func (cs *cors) allowed(ctx context.Context, origin, clientID string) (bool, error) {
	// Only a well-formed origin can match; "null" and junk cost no lookup.
	if cs.origins == nil || clientreg.ValidateCORSOrigin(origin) != nil {
		return false, nil
	}
	ok, err := cs.origins.allowed(ctx, origin, clientID)
	switch {
	case err == nil:
		return ok, nil
	case errors.Is(err, storage.ErrUnavailable):
		return false, err
	case ctx.Err() == nil:
		cs.log.ErrorContext(ctx, "cors origin lookup", "err", err)
	}
	return false, nil
}

// requestClientID is the client a token or revocation request names:
// HTTP Basic user (form-encoded, RFC 6749 §2.3.1) or the client_id form
// parameter that limitBody parsed.
func requestClientID(r *http.Request) string {
	if user, _, ok := r.BasicAuth(); ok {
		id, err := url.QueryUnescape(user)
		if err != nil {
			return ""
		}
		return id
	}
	return r.PostForm.Get("client_id")
}

// maxCORSTokenLen bounds the bearer token decoded for its client_id.
const maxCORSTokenLen = 8 << 10

// tokenClientID reads, without verifying it, the client_id claim of the
// bearer JWT access token (RFC 9068). Reading it unverified is safe for
// CORS: a forged token names a client, but /userinfo then refuses the
// token, so the page only learns that it was refused.
func tokenClientID(r *http.Request) string {
	tok, ok := bearerToken(r.Header.Get(echo.HeaderAuthorization))
	if !ok || len(tok) > maxCORSTokenLen {
		return ""
	}
	_, rest, ok := strings.Cut(tok, ".")
	if !ok {
		return ""
	}
	payload, _, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return ""
	}
	var claims struct {
		ClientID string `json:"client_id"`
	}
	if json.Unmarshal(raw, &claims) != nil {
		return ""
	}
	return claims.ClientID
}
