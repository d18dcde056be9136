package memory

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// auditLog is the store's audit trail, guarded by the store mutex. Its zero
// value is empty.
type auditLog struct {
	events  []storage.AuditEvent
	auditID int64
}

// AppendAudit stores a copy of e outside any transaction ctx carries, as
// the PostgreSQL backend does: a rollback never erases an event.
func (s *Store) AppendAudit(_ context.Context, e *storage.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = now()
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	s.auditID++
	e.ID = s.auditID
	s.events = append(s.events, copyEvent(e))
	return nil
}

func copyEvent(e *storage.AuditEvent) storage.AuditEvent {
	out := *e
	out.Details = maps.Clone(e.Details)
	if out.Details == nil {
		out.Details = map[string]string{}
	}
	return out
}

// compareEvents orders by (Time, ID), the order both backends page in.
func compareEvents(a, b storage.AuditEvent) int {
	return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.ID, b.ID))
}

// ListAudit returns copies, newest first.
func (s *Store) ListAudit(ctx context.Context, f storage.AuditFilter, after *storage.AuditCursor, limit int) ([]storage.AuditEvent, error) {
	if limit < 1 {
		return nil, fmt.Errorf("memory: list audit events: limit must be at least 1, got %d", limit)
	}
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []storage.AuditEvent
	for i := range s.events {
		e := &s.events[i]
		switch {
		case f.Type != "" && e.Type != f.Type,
			f.Target != "" && e.Target != f.Target,
			!f.Since.IsZero() && e.Time.Before(f.Since),
			!f.Until.IsZero() && !e.Time.Before(f.Until),
			after != nil && compareEvents(*e, storage.AuditEvent{Time: after.Time, ID: after.ID}) >= 0:
			continue
		}
		out = append(out, copyEvent(e))
	}
	slices.SortFunc(out, func(a, b storage.AuditEvent) int { return compareEvents(b, a) })
	return out[:min(limit, len(out))], nil
}

// PurgeAuditBefore deletes at most batch events older than before, oldest
// first.
func (s *Store) PurgeAuditBefore(_ context.Context, before time.Time, batch int) (int, error) {
	if batch < 1 {
		return 0, fmt.Errorf("memory: purge audit events: batch must be at least 1, got %d", batch)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var old []storage.AuditEvent
	for _, e := range s.events {
		if e.Time.Before(before) {
			old = append(old, e)
		}
	}
	slices.SortFunc(old, compareEvents)
	old = old[:min(batch, len(old))]
	s.events = slices.DeleteFunc(s.events, func(e storage.AuditEvent) bool {
		_, found := slices.BinarySearchFunc(old, e, compareEvents)
		return found
	})
	return len(old), nil
}
