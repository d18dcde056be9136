package web

import (
	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/storage"
)

// failFast gives each request a storage.FailFast context: once one of its
// storage calls finds the database unavailable, the rest fail at once, so
// the 503 comes after one database deadline, not one per lookup.
func failFast(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		c.SetRequest(r.WithContext(storage.FailFast(r.Context())))
		return next(c)
	}
}
