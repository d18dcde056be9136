package web

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
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
		requestIDs,
		traceRequest,
		auditContext,
		accessLog(log),
		metrics,
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			DisableStackAll: true,
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				log.ErrorContext(c.Request().Context(), "panic", "request_id", requestID(c), "err", err, "stack", string(stack))
				return err
			},
		}),
		securityHeaders(hsts),
		limitBody,
		failFast,
	)
	return e
}

// StatusClientClosedRequest is the status logged (never sent) for a request
// whose client went away before the answer was written, as nginx does: the
// server did not fail, so it is neither a 5xx nor an ERROR.
const StatusClientClosedRequest = 499

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
			status := c.Response().Status
			if clientGone(c) {
				status = StatusClientClosedRequest
			}
			log.InfoContext(c.Request().Context(), "request",
				"request_id", requestID(c),
				"method", c.Request().Method,
				"path", logPath(c),
				"status", status,
				"duration_ms", float64(time.Since(start).Microseconds())/1000,
			)
			return nil
		}
	}
}

// logPath is the path to log: the route pattern when the route has
// parameters, since those can be credentials (a login ticket in
// /login/tickets/{ticket} is worth a login to whoever scans it first).
func logPath(c echo.Context) string {
	if p := c.Path(); strings.Contains(p, ":") {
		return p
	}
	return c.Request().URL.Path
}

// clientGone reports a request whose client disconnected (net/http cancels
// the request context) before any answer was written. Whatever failed
// afterwards failed because of that, not because the server is broken.
func clientGone(c echo.Context) bool {
	return !c.Response().Committed && errors.Is(c.Request().Context().Err(), context.Canceled)
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

// maxRequestIDLen bounds a client-supplied X-Request-Id.
const maxRequestIDLen = 64

// requestIDs keeps a client's X-Request-Id (a proxy's correlation ID) only
// when it is short and of a safe alphabet: it is echoed in a header and
// written to every log line, so anything else (control characters, log or
// header injection, megabyte IDs) is replaced by a generated one.
func requestIDs(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rid := c.Request().Header.Get(echo.HeaderXRequestID)
		if !plainName(rid) {
			rid = newRequestID()
			c.Request().Header.Set(echo.HeaderXRequestID, rid)
		}
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		// In the context too, so every line logged during the request
		// carries it (ContextLogger).
		c.SetRequest(c.Request().WithContext(withRequestID(c.Request().Context(), rid)))
		return next(c)
	}
}

// plainName reports a non-empty string of at most maxRequestIDLen bytes
// from [A-Za-z0-9._-]: safe to echo in a header, a log line or a message.
func plainName(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '.', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// bearerToken extracts the token of an RFC 6750 Authorization header. The
// scheme is case-insensitive (RFC 7235 §2.1) and separated from the token
// by one or more spaces; the token must be non-empty and free of spaces
// and control characters, so a header that holds more than one credential
// is refused rather than guessed at.
func bearerToken(header string) (string, bool) {
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok := strings.Trim(rest, " \t")
	if tok == "" {
		return "", false
	}
	for i := 0; i < len(tok); i++ {
		if b := tok[i]; b <= ' ' || b == 0x7f {
			return "", false
		}
	}
	return tok, true
}

// getAndHead registers h for GET and HEAD: RFC 9110 §9.3.2 makes HEAD a GET
// without the body, and net/http discards the body written to a HEAD
// request while keeping the headers (Content-Length included).
func getAndHead(e *echo.Echo, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
	e.Match([]string{http.MethodGet, http.MethodHead}, path, h, m...)
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

// DefaultShutdownTimeout is how long in-flight requests may take to finish
// once shutdown begins, unless ServeOptions says otherwise.
const DefaultShutdownTimeout = 20 * time.Second

// ErrShutdownTimeout means requests were still running when the shutdown
// timeout ran out, and their connections were closed.
var ErrShutdownTimeout = errors.New("shutdown timeout: in-flight requests were cut")

// ServeOptions tune Serve; the zero value serves plain HTTP.
type ServeOptions struct {
	// ShutdownTimeout bounds the drain once ctx ends (default
	// DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// TLS, when set, serves HTTPS (HTTP/2 included) with it.
	TLS *tls.Config
}

// Serve runs handler on ln until ctx ends, then shuts down gracefully: the
// listener closes at once, idle connections are closed, and requests in
// flight run to completion for up to opts.ShutdownTimeout; those still
// running then are cut (ErrShutdownTimeout). Request contexts do not derive
// from ctx, so ending ctx does not cancel them.
func Serve(ctx context.Context, ln net.Listener, handler http.Handler, opts ServeOptions) error {
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         opts.TLS,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() {
		if opts.TLS != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificate comes from opts.TLS
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	timeout := opts.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// Shutdown leaves the stragglers running; closing their connections
		// cancels their request contexts, so they stop too.
		_ = srv.Close()
		return ErrShutdownTimeout
	}
	return err
}

func isHTTPS(issuer string) bool { return strings.HasPrefix(issuer, "https://") }
