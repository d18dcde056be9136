package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/storage"
)

// AppendAudit inserts e on the pool, outside any transaction ctx carries:
// an event records what happened even when the action's transaction rolls
// back (a refused or failed action is worth recording too).
func (s *Store) AppendAudit(ctx context.Context, e *storage.AuditEvent) error {
	if e.Time.IsZero() {
		e.Time = now()
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	details := e.Details
	if details == nil {
		details = map[string]string{}
	}
	q := timed{q: s.pool, d: s.timeout}
	err := q.QueryRow(ctx, `INSERT INTO audit_events
		(created_at, type, actor, source, request_id, target, outcome, details)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		e.Time, e.Type, e.Actor, e.Source, e.RequestID, e.Target, e.Outcome, details).Scan(&e.ID)
	return recordErr("append audit event", err)
}

// ListAudit pages newest first. The row comparison (created_at, id) < (...)
// resumes after the cursor and matches the indexes' column order, so each
// filter walks its index backwards from the cursor and stops at limit.
func (s *Store) ListAudit(ctx context.Context, f storage.AuditFilter, after *storage.AuditCursor, limit int) ([]storage.AuditEvent, error) {
	if limit < 1 {
		return nil, fmt.Errorf("postgres: list audit events: limit must be at least 1, got %d", limit)
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.Type != "" {
		add("type = ?", f.Type)
	}
	if f.Target != "" {
		add("target = ?", f.Target)
	}
	if !f.Since.IsZero() {
		add("created_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		add("created_at < ?", f.Until)
	}
	if after != nil {
		args = append(args, after.Time, after.ID)
		where = append(where, fmt.Sprintf("(created_at, id) < ($%d, $%d)", len(args)-1, len(args)))
	}
	sql := `SELECT id, created_at, type, actor, source, request_id, target, outcome, details FROM audit_events`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	sql += fmt.Sprintf(" ORDER BY created_at DESC, id DESC LIMIT $%d", len(args))
	rows, err := s.db(ctx).Query(ctx, sql, args...)
	if err != nil {
		return nil, recordErr("list audit events", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.AuditEvent, error) {
		var e storage.AuditEvent
		err := row.Scan(&e.ID, &e.Time, &e.Type, &e.Actor, &e.Source, &e.RequestID, &e.Target, &e.Outcome, &e.Details)
		e.Time = e.Time.UTC()
		return e, err
	})
	if err != nil {
		return nil, recordErr("list audit events", err)
	}
	return events, nil
}

// PurgeAuditBefore deletes at most batch events older than before, walking
// audit_events_time from its oldest end as PurgeExpired walks the expiry
// indexes: bounded work per call, and rows another janitor holds are
// skipped rather than waited for.
func (s *Store) PurgeAuditBefore(ctx context.Context, before time.Time, batch int) (int, error) {
	if batch < 1 {
		return 0, fmt.Errorf("postgres: purge audit events: batch must be at least 1, got %d", batch)
	}
	tag, err := s.db(ctx).Exec(ctx, `DELETE FROM audit_events WHERE id IN (
		SELECT id FROM audit_events WHERE created_at < $1
		ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)`, before, batch)
	if err != nil {
		return 0, recordErr("purge audit events", err)
	}
	return int(tag.RowsAffected()), nil
}
