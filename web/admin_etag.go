package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/storage"
)

// Optimistic concurrency for the admin API's client PUT: a read-modify-write
// (the CLI's update) sends back the ETag it read, so a change made by
// someone else in between is refused instead of silently reverted.

// clientChanged answers a PUT whose If-Match no longer matches.
func clientChanged() error {
	return newAPIError(http.StatusPreconditionFailed, "precondition_failed",
		"The client changed since it was read; read it again.")
}

// setClientETag sets the strong ETag of c: its UpdatedAt in nanoseconds,
// which the stores keep exactly and move forward on every update.
func setClientETag(c echo.Context, cl *storage.Client) {
	c.Response().Header().Set("ETag", `"`+strconv.FormatInt(cl.UpdatedAt.UnixNano(), 10)+`"`)
}

// ifMatchUpdatedAt returns the UpdatedAt the request's If-Match names, or
// the zero time when there is no condition (no header, or "*": the client
// must merely exist, which the update checks anyway). A value that is not
// one of our ETags (a weak one, a list, garbage) can never match: 412.
func ifMatchUpdatedAt(c echo.Context) (time.Time, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" || h == "*" {
		return time.Time{}, nil
	}
	digits, opened := strings.CutPrefix(h, `"`)
	digits, closed := strings.CutSuffix(digits, `"`)
	n, err := strconv.ParseUint(digits, 10, 63)
	if !opened || !closed || err != nil {
		return time.Time{}, clientChanged()
	}
	return time.Unix(0, int64(n)).UTC(), nil
}
