package web

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/storage"
)

// retryAfterUnavailable is the Retry-After, in seconds, of a 503 caused by
// storage being unreachable: about one database deadline.
const retryAfterUnavailable = "5"

// apiError is an error with a status and an RFC 6749-shaped body.
type apiError struct {
	status      int
	code        string
	description string
}

func (e *apiError) Error() string { return e.code + ": " + e.description }

func newAPIError(status int, code, description string) *apiError {
	return &apiError{status: status, code: code, description: description}
}

// retryAfter is the header every 429 and 503 answer carries (RFC 9110
// §10.2.3), so clients back off instead of hammering a struggling server.
const retryAfter = "Retry-After"

// errorHandler is the one place non-OAuth errors become responses. Known
// errors keep their message; anything else is logged and answered with a
// generic server_error.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		if clientGone(c) {
			// Nobody is left to answer, and the failure (often the
			// canceled context itself) is not the server's: accessLog
			// records the request as 499 at INFO.
			return
		}
		var ae *apiError
		var he *echo.HTTPError
		switch {
		case errors.As(err, &ae):
		case errors.As(err, &he):
			ae = fromHTTPError(he)
		case errors.Is(err, storage.ErrUnavailable):
			// Storage is down or hung: say so, so callers retry, instead of
			// a 500 that reads as a bug or a verdict on their request.
			log.WarnContext(c.Request().Context(), "storage unavailable", "request_id", requestID(c), "path", logPath(c), "err", err)
			c.Response().Header().Set("Retry-After", retryAfterUnavailable)
			ae = newAPIError(http.StatusServiceUnavailable, "temporarily_unavailable", "The service is temporarily unavailable. Retry later.")
		default:
			log.ErrorContext(c.Request().Context(), "internal error", "request_id", requestID(c), "path", logPath(c), "err", err)
			ae = newAPIError(http.StatusInternalServerError, "server_error", "The server encountered an internal error.")
		}
		if ae.status == http.StatusUnauthorized && c.Response().Header().Get(echo.HeaderWWWAuthenticate) == "" {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="wxidp"`)
		}
		if ae.status == http.StatusServiceUnavailable && c.Response().Header().Get(retryAfter) == "" {
			c.Response().Header().Set(retryAfter, retryAfterUnavailable)
		}
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		var werr error
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(ae.status)
		} else {
			werr = c.JSON(ae.status, map[string]string{"error": ae.code, "error_description": ae.description})
		}
		if werr != nil {
			log.ErrorContext(c.Request().Context(), "write error response", "request_id", requestID(c), "err", werr)
		}
	}
}

func fromHTTPError(he *echo.HTTPError) *apiError {
	switch he.Code {
	case http.StatusNotFound:
		return newAPIError(he.Code, "not_found", "No such resource.")
	case http.StatusMethodNotAllowed:
		return newAPIError(he.Code, "method_not_allowed", "Method not allowed on this resource.")
	case http.StatusRequestEntityTooLarge:
		return newAPIError(he.Code, "invalid_request", "Request body is too large.")
	case http.StatusUnauthorized:
		return newAPIError(he.Code, "invalid_token", "Missing or invalid credentials.")
	case http.StatusUnsupportedMediaType:
		return newAPIError(he.Code, "invalid_request", "Unsupported content type.")
	default:
		if he.Code >= 500 {
			return newAPIError(he.Code, "server_error", http.StatusText(he.Code))
		}
		return newAPIError(he.Code, "invalid_request", http.StatusText(he.Code))
	}
}
