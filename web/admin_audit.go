package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
)

// AuditLog is what the admin API reads of the audit trail.
type AuditLog interface {
	ListAudit(ctx context.Context, f storage.AuditFilter, after *storage.AuditCursor, limit int) ([]storage.AuditEvent, error)
}

// Paging of GET /admin/audit.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
	maxAuditTarget    = 256
)

// auditEvent is an event as the admin API shows it.
type auditEvent struct {
	ID        int64             `json:"id"`
	Time      string            `json:"time"`
	Type      string            `json:"type"`
	Actor     string            `json:"actor"`
	Source    string            `json:"source"`
	RequestID string            `json:"request_id"`
	Target    string            `json:"target"`
	Outcome   string            `json:"outcome"`
	Details   map[string]string `json:"details"`
}

// listAudit answers GET /admin/audit: events newest first, filtered by
// type, target and a [since, until) time range, limit per page; next_cursor,
// present while more events match, resumes after the page's last event.
func (a *admin) listAudit(c echo.Context) error {
	if a.Audit == nil {
		return newAPIError(http.StatusNotFound, "not_found", "No audit trail is configured.")
	}
	f, after, limit, err := auditQuery(c)
	if err != nil {
		return newAPIError(http.StatusBadRequest, "invalid_request", err.Error())
	}
	// One more than asked, to know whether another page exists without
	// handing out a cursor to an empty page.
	events, err := a.Audit.ListAudit(c.Request().Context(), f, after, limit+1)
	if err != nil {
		return err
	}
	resp := struct {
		Events     []auditEvent `json:"events"`
		NextCursor string       `json:"next_cursor,omitempty"`
	}{Events: make([]auditEvent, 0, min(len(events), limit))}
	if len(events) > limit {
		events = events[:limit]
		last := events[limit-1]
		resp.NextCursor = encodeCursor(storage.AuditCursor{Time: last.Time, ID: last.ID})
	}
	for _, e := range events {
		resp.Events = append(resp.Events, auditEvent{ID: e.ID, Time: e.Time.UTC().Format(time.RFC3339Nano), Type: e.Type,
			Actor: e.Actor, Source: e.Source, RequestID: e.RequestID, Target: e.Target, Outcome: e.Outcome, Details: e.Details})
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, resp)
}

// auditQuery parses the query string. Errors name the parameter, never
// echo more than it.
func auditQuery(c echo.Context) (storage.AuditFilter, *storage.AuditCursor, int, error) {
	var f storage.AuditFilter
	q := c.QueryParams()
	if t := q.Get("type"); t != "" {
		if !audit.Type(t).Known() {
			return f, nil, 0, errors.New("type is not a known audit event type")
		}
		f.Type = t
	}
	if f.Target = q.Get("target"); len(f.Target) > maxAuditTarget {
		return f, nil, 0, errors.New("target is too long")
	}
	if err := timeRange(q, "since", "until", &f.Since, &f.Until); err != nil {
		return f, nil, 0, err
	}
	limit, err := pageLimit(q, defaultAuditLimit, maxAuditLimit)
	if err != nil {
		return f, nil, 0, err
	}
	var after *storage.AuditCursor
	if v := q.Get("cursor"); v != "" {
		cur, err := decodeCursor(v)
		if err != nil {
			return f, nil, 0, errors.New("cursor is not one this server issued")
		}
		after = &cur
	}
	return f, after, limit, nil
}

// timeRange parses the RFC 3339 query parameters from (inclusive) and until
// (exclusive) of a listing into fromT and untilT, left zero when absent.
func timeRange(q url.Values, from, until string, fromT, untilT *time.Time) error {
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{from, fromT}, {until, untilT}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return fmt.Errorf("%s must be an RFC 3339 time", p.name)
			}
			*p.dst = t
		}
	}
	if !fromT.IsZero() && !untilT.IsZero() && !untilT.After(*fromT) {
		return fmt.Errorf("%s must be after %s", until, from)
	}
	return nil
}

// pageLimit parses a listing's limit parameter: def when absent, else 1 to
// most.
func pageLimit(q url.Values, def, most int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, fmt.Errorf("limit must be an integer from 1 to %d", most)
	}
	return n, nil
}

// Cursors are opaque to clients: a versioned encoding of the position, so
// its form can change without breaking a client that only passes it back.
const cursorPrefix = "a1."

// timestampMicros reports whether micros (since the epoch) is a time
// PostgreSQL's timestamptz holds, years 1 to 9999: a forged cursor with
// another is a 400, not a database error.
func timestampMicros(micros int64) bool {
	return micros >= -62135596800000000 && micros <= 253402300799999999
}

func encodeCursor(c storage.AuditCursor) string {
	return cursorPrefix + base64.RawURLEncoding.EncodeToString(
		[]byte(strconv.FormatInt(c.Time.UnixMicro(), 10)+"."+strconv.FormatInt(c.ID, 10)))
}

func decodeCursor(s string) (storage.AuditCursor, error) {
	var c storage.AuditCursor
	rest, ok := strings.CutPrefix(s, cursorPrefix)
	if !ok || len(rest) > 64 {
		return c, errors.New("bad cursor")
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return c, err
	}
	us, id, ok := strings.Cut(string(raw), ".")
	if !ok {
		return c, errors.New("bad cursor")
	}
	micros, err1 := strconv.ParseInt(us, 10, 64)
	c.ID, err = strconv.ParseInt(id, 10, 64)
	if err1 != nil || err != nil || c.ID < 1 || !timestampMicros(micros) {
		return c, errors.New("bad cursor")
	}
	c.Time = time.UnixMicro(micros).UTC()
	return c, nil
}

// record records an admin action done by this request, its outcome told by
// err: success when nil, otherwise a failure with the kind of error (its
// code, never its text, which may quote the request).
func (a *admin) record(c echo.Context, typ audit.Type, target string, err error, details map[string]string) {
	outcome := audit.Success
	if err != nil {
		outcome = audit.Failure
		if details == nil {
			details = map[string]string{}
		}
		details["error"] = errorKind(err)
	}
	a.Recorder.Record(c.Request().Context(), audit.Event{Type: typ, Actor: actor(c), Target: target, Outcome: outcome, Details: details})
}

// errorKind is the API error code err will be answered with.
func errorKind(err error) string {
	var ae *apiError
	switch {
	case errors.As(clientError(err), &ae):
		return ae.code
	case errors.Is(err, keys.ErrNotReady):
		return "not_ready"
	case errors.Is(err, storage.ErrUnavailable):
		return "temporarily_unavailable"
	default:
		return "server_error"
	}
}

// recordUpdate records a client update: a secret reset when it sets a new
// client_secret (the event operators look for after a leak), an update
// otherwise.
func (a *admin) recordUpdate(c echo.Context, req clientRequest, err error) {
	typ, details := audit.ClientUpdated, map[string]string{}
	if req.ClientSecret != "" {
		typ = audit.ClientSecretReset
	}
	if req.WeChatAppSecret != "" {
		details["wechat_app_secret"] = "replaced"
	}
	a.record(c, typ, c.Param("id"), err, details)
}

// recordCreate records a registration; the target is the client_id asked
// for when it failed (possibly none: generated ones exist only on success).
func (a *admin) recordCreate(c echo.Context, cl *storage.Client, req clientRequest, err error) {
	target, details := req.ClientID, map[string]string{}
	if cl != nil {
		target = cl.ID
		details["token_endpoint_auth_method"] = cl.TokenEndpointAuthMethod
		if cl.WeChatAppID != "" {
			details["wechat_appid"] = cl.WeChatAppID
		}
	}
	a.record(c, audit.ClientCreated, target, err, details)
}

// recordRotation records a key rotation: the target is the key that now
// signs, the details name the one retired; a refused rotation names the
// key that stays active.
func (a *admin) recordRotation(c echo.Context, activeBefore string, err error) {
	if err != nil {
		a.record(c, audit.KeyRotated, activeBefore, err, nil)
		return
	}
	a.record(c, audit.KeyRotated, activeKID(a.Keys.Keys()), nil, map[string]string{"retired_kid": activeBefore})
}

func activeKID(ks []storage.SigningKey) string {
	for _, k := range ks {
		if k.State == storage.KeyActive {
			return k.KID
		}
	}
	return ""
}
