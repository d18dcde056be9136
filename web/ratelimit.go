package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/provider"
	"github.com/wxidp/wxidp/ratelimit"
)

// Throttler applies rate limits (ratelimit.Throttle).
type Throttler interface {
	Allow(ctx context.Context, l ratelimit.Limit, key string) ratelimit.Decision
	Check(ctx context.Context, l ratelimit.Limit, key string) ratelimit.Decision
	Spend(ctx context.Context, l ratelimit.Limit, key string) (exhausted bool)
}

// RateLimit bounds the public endpoints by what each request proves. What
// the web layer can tell before any work is the source address (IPv6 by
// its /64); bearer requests are then limited by the verified token's
// subject, or, when the token is invalid, by their source, so junk tokens
// spend the sender's budget and no one else's. Client-keyed limits live in
// the provider (provider.Limits), which knows when a client has
// authenticated. Zero limits are off; a nil Throttle limits nothing.
type RateLimit struct {
	Throttle Throttler
	// Source: requests to the OAuth and bearer endpoints per source.
	Source ratelimit.Limit
	// InvalidToken: invalid bearer tokens per source; once spent, that
	// source's bearer requests are refused before verification.
	InvalidToken ratelimit.Limit
	// Subject: bearer requests per verified subject.
	Subject ratelimit.Limit
	// LoginTickets: scan-to-login tickets created per source; each is a
	// row in the database.
	LoginTickets ratelimit.Limit
}

// allowTicket spends one of the source's login tickets.
func (rl RateLimit) allowTicket(c echo.Context) (ratelimit.Decision, bool) {
	if rl.Throttle == nil {
		return ratelimit.Decision{Allowed: true}, true
	}
	ctx := c.Request().Context()
	d := rl.Throttle.Allow(ctx, rl.LoginTickets, ratelimit.SourceOf(ctx))
	return d, d.Allowed
}

// middleware records the request's source for the throttles below (the
// provider's too) and applies the per-source limit.
func (rl RateLimit) middleware() []echo.MiddlewareFunc {
	return []echo.MiddlewareFunc{func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			src := ratelimit.Source(c.RealIP())
			r := c.Request()
			c.SetRequest(r.WithContext(ratelimit.WithSource(r.Context(), src)))
			if rl.Throttle != nil {
				if d := rl.Throttle.Allow(c.Request().Context(), rl.Source, src); !d.Allowed {
					return refuse(c, d)
				}
			}
			return next(c)
		}
	}}
}

// bearer authenticates the request's bearer token with verify, under the
// bearer limits: a source whose invalid-token budget is spent is refused
// before verify runs; after it, a verified token (claims with a sub) is
// charged to its subject, a forged one to its source. A missing token is
// 401 invalid_request (RFC 6750 §3.1: no error code in the challenge), a
// refusal of the limits is its 429; otherwise verify's own error comes
// back as it is, for the endpoint to answer in its words.
func (rl RateLimit) bearer(c echo.Context, verify func(token string) (claims map[string]any, err error)) error {
	tok, ok := bearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
	if !ok {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="wxidp"`)
		return newAPIError(http.StatusUnauthorized, "invalid_request", "A bearer access token is required.")
	}
	if err := rl.beforeBearer(c); err != nil {
		return err
	}
	claims, err := verify(tok)
	if err := rl.afterBearer(c, claims, err); err != nil {
		return err
	}
	return err
}

// beforeBearer refuses a bearer request from a source whose invalid-token
// budget is spent, before the token is verified.
func (rl RateLimit) beforeBearer(c echo.Context) error {
	if rl.Throttle == nil {
		return nil
	}
	ctx := c.Request().Context()
	if d := rl.Throttle.Check(ctx, rl.InvalidToken, ratelimit.SourceOf(ctx)); !d.Allowed {
		return refuse(c, d)
	}
	return nil
}

// afterBearer charges a verified request to its subject, a forged or
// malformed token to its source. A token we signed that has expired or
// been revoked is answered invalid_token but charged to no one: behind a
// carrier NAT, other users' stale tokens would otherwise lock a valid user
// out, and whoever holds one was once a legitimate user.
func (rl RateLimit) afterBearer(c echo.Context, claims map[string]any, err error) error {
	if rl.Throttle == nil {
		return nil
	}
	ctx := c.Request().Context()
	if errors.Is(err, provider.ErrInvalidToken) {
		if !errors.Is(err, provider.ErrTokenInactive) {
			rl.Throttle.Spend(ctx, rl.InvalidToken, ratelimit.SourceOf(ctx))
		}
		return nil
	}
	if sub, ok := claims["sub"].(string); ok && err == nil {
		if d := rl.Throttle.Allow(ctx, rl.Subject, sub); !d.Allowed {
			return refuse(c, d)
		}
	}
	return nil
}

// refuse answers 429 with Retry-After and an RFC 6749-shaped body.
func refuse(c echo.Context, d ratelimit.Decision) error {
	c.Response().Header().Set(retryAfter, strconv.Itoa(d.RetryAfterSeconds()))
	return newAPIError(http.StatusTooManyRequests, "temporarily_unavailable", "Too many requests. Retry later.")
}

// retryAfterOf is the Retry-After of a 429 from the provider: the limit's
// own wait when a rate limit refused, else def (WeChat's quota).
func retryAfterOf(err error, def string) string {
	var r *ratelimit.Refusal
	if errors.As(err, &r) {
		return strconv.Itoa(r.RetryAfterSeconds())
	}
	return def
}
