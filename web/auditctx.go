package web

import (
	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/audit"
)

// auditContext puts the request ID and the client's address in the request
// context, where audit events recorded anywhere below (handlers, the
// provider) find them. It runs after requestIDs, which settles the ID.
func auditContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		c.SetRequest(r.WithContext(audit.WithRequest(r.Context(), requestID(c), c.RealIP())))
		return next(c)
	}
}
