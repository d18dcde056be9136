package web

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// MaxFormBytes caps request bodies; larger bodies get 413.
const MaxFormBytes = 64 << 10

func newEcho(log *slog.Logger, hsts bool, metrics echo.MiddlewareFunc, trustedProxies ...*net.IPNet) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(log)
	// The peer address, not X-Forwarded-For: that header is the client's to
	// forge, and rate limits key on the IP. Behind load balancers, their
	// ranges are trusted to append the real client to X-Forwarded-For.
	e.IPExtractor = echo.ExtractIPDirect()
	if len(trustedProxies) > 0 {
		opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range trustedProxies {
			opts = append(opts, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(opts...)
	}
	e.Use(
		middleware.RequestID(),
		accessLog(log),
		metrics,
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			DisableStackAll: true,
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				log.Error("panic", "request_id", requestID(c), "err", err, "stack", string(stack))
				return err
			},
		}),
		securityHeaders(hsts),
		limitBody,
	)
	return e
}

// accessLog logs one line per request: method, path, status, latency. Never
// the query string, headers or body: they carry codes, secrets and tokens.
func accessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err) // write the response now so the status below is final
			}
			log.Info("request",
				"request_id", requestID(c),
				"method", c.Request().Method,
				"path", c.Request().URL.Path,
				"status", c.Response().Status,
				"duration_ms", float64(time.Since(start).Microseconds())/1000,
			)
			return nil
		}
	}
}

// limitBody caps every request body at MaxFormBytes and answers 413 when
// it is exceeded, whether or not the client sent a Content-Length. Form
// bodies are parsed here, before fosite reads them, because fosite turns a
// read error into a 400; the parsed form is what fosite then uses.
func limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > MaxFormBytes {
			return echo.ErrStatusRequestEntityTooLarge
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, MaxFormBytes)
		if r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get(echo.HeaderContentType), echo.MIMEApplicationForm) {
			if err := r.ParseForm(); err != nil {
				var tooLarge *http.MaxBytesError
				if errors.As(err, &tooLarge) {
					return echo.ErrStatusRequestEntityTooLarge
				}
				return newAPIError(http.StatusBadRequest, "invalid_request", "The form body is malformed.")
			}
		}
		return next(c)
	}
}

func requestID(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
}

func securityHeaders(hsts bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("X-Frame-Options", "DENY")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
			if hsts {
				h.Set("Strict-Transport-Security", "max-age=31536000")
			}
			return next(c)
		}
	}
}

// Serve runs handler on ln until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, handler http.Handler) error {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

func isHTTPS(issuer string) bool { return strings.HasPrefix(issuer, "https://") }
