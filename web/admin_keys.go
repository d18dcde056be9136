package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
)

// CLIUserAgent prefixes the User-Agent `wxidp keys` sends, so the admin API
// can tell in its logs whether an operator used the CLI or called the API
// directly. Both hold the same admin token: this attributes, it does not
// authenticate.
const CLIUserAgent = "wxidp-cli"

// revokeKey is the emergency revocation of a leaked signing key: it leaves
// the JWKS and signing at once, and tokens it signed stop verifying. It
// answers the key list as it stands afterwards, like a rotation.
func (a *admin) revokeKey(c echo.Context) error {
	kid := c.Param("kid")
	err := a.Keys.Revoke(c.Request().Context(), kid)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		a.record(c, audit.KeyRevoked, kid, err, nil)
		return newAPIError(http.StatusNotFound, "not_found", "No such signing key.")
	case err != nil && !errors.Is(err, keys.ErrRevokedIncomplete):
		a.record(c, audit.KeyRevoked, kid, err, nil)
		return err
	}
	// Revoked, even if this process has yet to reload its keys. The log
	// line stays beside the audit event: it is what log-based alerting on
	// a revocation watches.
	details := map[string]string{}
	if err != nil {
		details["reload"] = "pending"
	}
	a.record(c, audit.KeyRevoked, kid, nil, details)
	a.Log.Info("signing key revoked", "kid", kid, "actor", actor(c), "request_id", requestID(c))
	if errors.Is(err, storage.ErrUnavailable) {
		// The database went away between the revocation and the reload: an
		// outage, answered as one (503), saying what did happen.
		a.Log.Warn("signing key revocation incomplete: storage unavailable", "kid", kid, "request_id", requestID(c), "err", err)
		c.Response().Header().Set("Retry-After", retryAfterUnavailable)
		return newAPIError(http.StatusServiceUnavailable, "temporarily_unavailable",
			"The key is revoked, but this process could not reload its keys; it retries at its next key reload.")
	}
	if err != nil {
		// Revoked all the same: say so, or a retry's 404 would puzzle.
		a.Log.Error("signing key revocation incomplete", "kid", kid, "request_id", requestID(c), "err", err)
		return newAPIError(http.StatusInternalServerError, "server_error",
			"The key is revoked, but this process could not update its keys; it retries at its next key reload.")
	}
	return a.listKeys(c)
}

func actor(c echo.Context) string {
	if strings.HasPrefix(c.Request().UserAgent(), CLIUserAgent) {
		return "cli"
	}
	return "admin-api"
}
