package web

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"
)

// RateLimit bounds request rates at the OAuth endpoints, per process: per
// client IP, and per client_id. The mini-program's client_id is public, so
// without a per-client bound anyone could spend the app's WeChat quota
// (45011) with made-up codes and lock every user of the app out. Zero
// values disable a limit.
type RateLimit struct {
	PerIP, PerClient           rate.Limit // requests per second
	PerIPBurst, PerClientBurst int
}

func (rl RateLimit) middleware() []echo.MiddlewareFunc {
	var out []echo.MiddlewareFunc
	if rl.PerIP > 0 {
		out = append(out, limiter(rl.PerIP, rl.PerIPBurst, func(c echo.Context) (string, error) {
			return "ip:" + c.RealIP(), nil
		}))
	}
	if rl.PerClient > 0 {
		out = append(out, limiter(rl.PerClient, rl.PerClientBurst, func(c echo.Context) (string, error) {
			return "client:" + clientIDOf(c.Request()), nil
		}))
	}
	return out
}

func limiter(r rate.Limit, burst int, id middleware.Extractor) echo.MiddlewareFunc {
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
			Rate: r, Burst: max(burst, 1),
		}),
		IdentifierExtractor: id,
		DenyHandler: func(c echo.Context, _ string, _ error) error {
			c.Response().Header().Set("Retry-After", "1")
			return newAPIError(http.StatusTooManyRequests, "temporarily_unavailable", "Too many requests. Retry later.")
		},
	})
}

// clientIDOf names the client a request claims to be, from HTTP Basic or
// the form limitBody already parsed; unauthenticated, but only used to
// pick a bucket.
func clientIDOf(r *http.Request) string {
	if user, _, ok := r.BasicAuth(); ok {
		if id, err := url.QueryUnescape(user); err == nil {
			return id
		}
	}
	return r.PostForm.Get("client_id")
}
