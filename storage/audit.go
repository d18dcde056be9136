package storage

import (
	"context"
	"time"
)

// AuditEvent is one entry of the audit trail: an admin action or a security
// event. It never holds a secret: no token, code, client secret or key
// material, in Details either.
type AuditEvent struct {
	// ID is assigned by the store on append, increasing; with Time it gives
	// the list its stable order.
	ID int64
	// Time is when it happened; the store sets it when zero.
	Time time.Time
	// Type is one of the audit package's event types.
	Type string
	// Actor is who acted: "admin-api", "cli", "system", or "client:" and a
	// client_id.
	Actor string
	// Source is the network address the request came from, if any.
	Source string
	// RequestID ties the event to the access log line of its request.
	RequestID string
	// Target is what was acted on: a client_id, a kid, ...
	Target string
	// Outcome is the audit package's outcome: success, failure, denied,
	// revoked.
	Outcome string
	// Details are further non-secret facts (an error kind, a chain's
	// request ID, an appid).
	Details map[string]string
}

// AuditFilter selects events; zero fields do not filter.
type AuditFilter struct {
	Type   string
	Target string
	// Since is inclusive, Until exclusive.
	Since, Until time.Time
}

// AuditCursor is where a page of events ended: the (Time, ID) of its last
// (oldest) event. The next page holds the events strictly older.
type AuditCursor struct {
	Time time.Time
	ID   int64
}

// AuditStore keeps the audit trail: append-only but for the retention purge.
type AuditStore interface {
	// AppendAudit stores e, setting e.ID and, when zero, e.Time. It never
	// joins a transaction the context carries: an event stands even when
	// the action it records is rolled back.
	AppendAudit(ctx context.Context, e *AuditEvent) error
	// ListAudit returns at most limit events matching f, newest first by
	// (Time, ID), starting strictly after the cursor when one is given.
	ListAudit(ctx context.Context, f AuditFilter, after *AuditCursor, limit int) ([]AuditEvent, error)
	// PurgeAuditBefore deletes at most batch events with Time before
	// `before`, oldest first, walking the time index (bounded work per
	// call; callers loop until it returns 0), and returns how many.
	PurgeAuditBefore(ctx context.Context, before time.Time, batch int) (int, error)
}
