package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/provider"
	"github.com/wxidp/wxidp/storage"
)

// TicketAPI is what the mini-program's side of scan-to-login needs: the
// user behind its bearer token, and the ticket's steps.
type TicketAPI interface {
	BearerUser(ctx context.Context, token string) (string, error)
	ViewTicket(ctx context.Context, ticket, userID string) (*provider.UserTicket, error)
	ScanTicket(ctx context.Context, ticket, userID string) (*storage.LoginTicket, error)
	DecideTicket(ctx context.Context, ticket, userID string, approve bool) (*storage.LoginTicket, error)
	Now() time.Time
}

type ticketAPI struct {
	api TicketAPI
	rl  RateLimit
}

func registerTicketAPI(e *echo.Echo, t *ticketAPI, limits []echo.MiddlewareFunc) {
	getAndHead(e, "/login/tickets/:ticket", t.get, limits...)
	e.POST("/login/tickets/:ticket/scan", t.scan, limits...)
	e.POST("/login/tickets/:ticket/approve", t.approve, limits...)
	e.POST("/login/tickets/:ticket/deny", t.deny, limits...)
}

// user authenticates the mini-program's bearer token, under the same rate
// limits as /userinfo.
func (t *ticketAPI) user(c echo.Context) (string, error) {
	var user string
	err := t.rl.bearer(c, func(tok string) (map[string]any, error) {
		var err error
		if user, err = t.api.BearerUser(c.Request().Context(), tok); err != nil {
			return nil, err
		}
		return map[string]any{"sub": user}, nil
	})
	switch {
	case errors.Is(err, provider.ErrInvalidToken):
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
		return "", newAPIError(http.StatusUnauthorized, "invalid_token", "The access token is missing, invalid, expired or revoked.")
	case errors.Is(err, provider.ErrNotAUser):
		return "", newAPIError(http.StatusForbidden, "access_denied", "Only a mini-program user's access token may act on login tickets.")
	case err != nil:
		return "", err
	}
	return user, nil
}

// ticketJSON is the ticket as the mini-program shows it before approval.
func ticketJSON(v *provider.UserTicket, now time.Time) map[string]any {
	tk := v.Ticket
	return map[string]any{
		"ticket": tk.ID, "state": ticketStatus(tk, now), "client_id": tk.ClientID, "client_name": v.ClientName,
		"scopes": nonNil(tk.Scopes), "requested_at": tk.CreatedAt.UTC().Format(time.RFC3339),
		"expires_at": tk.ExpiresAt.UTC().Format(time.RFC3339), "source_ip": tk.SourceIP, "user_agent": tk.UserAgent,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (t *ticketAPI) get(c echo.Context) error {
	user, err := t.user(c)
	if err != nil {
		return err
	}
	v, err := t.api.ViewTicket(c.Request().Context(), c.Param("ticket"), user)
	if err != nil {
		return ticketAPIError(err)
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, ticketJSON(v, t.api.Now()))
}

func (t *ticketAPI) scan(c echo.Context) error {
	user, err := t.user(c)
	if err != nil {
		return err
	}
	tk, err := t.api.ScanTicket(c.Request().Context(), c.Param("ticket"), user)
	if err != nil {
		return ticketAPIError(err)
	}
	return c.JSON(http.StatusOK, map[string]any{"state": string(tk.State)})
}

func (t *ticketAPI) approve(c echo.Context) error { return t.decide(c, true) }
func (t *ticketAPI) deny(c echo.Context) error    { return t.decide(c, false) }

func (t *ticketAPI) decide(c echo.Context, approve bool) error {
	user, err := t.user(c)
	if err != nil {
		return err
	}
	tk, err := t.api.DecideTicket(c.Request().Context(), c.Param("ticket"), user, approve)
	if err != nil {
		return ticketAPIError(err)
	}
	return c.JSON(http.StatusOK, map[string]any{"state": string(tk.State)})
}

// ticketAPIError: 404 unknown, 409 another user's or already decided, 410
// expired; an outage goes to the error handler (503).
func ticketAPIError(err error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return newAPIError(http.StatusNotFound, "not_found", "No such login ticket.")
	case errors.Is(err, storage.ErrConflict):
		return newAPIError(http.StatusConflict, "ticket_conflict", "The login ticket was scanned by someone else or is already decided.")
	case errors.Is(err, storage.ErrExpired):
		return newAPIError(http.StatusGone, "expired_ticket", "The login ticket has expired; the website shows a new code.")
	}
	return err
}
