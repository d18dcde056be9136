package memory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// loginData holds the maps of this file; Store embeds it so New can make
// them in one place.
type loginData struct {
	tickets  map[string]storage.LoginTicket
	sessions map[string]storage.BrowserSession
}

func newLoginData() loginData {
	return loginData{tickets: map[string]storage.LoginTicket{}, sessions: map[string]storage.BrowserSession{}}
}

// Table names key storage.PurgeStats as in the PostgreSQL backend.
const (
	ticketTable  = "login_tickets"
	sessionTable = "browser_sessions"
)

func copyTicket(t storage.LoginTicket) *storage.LoginTicket {
	t.Scopes = slices.Clone(t.Scopes)
	return &t
}

// CreateLoginTicket stores a copy of t as waiting: State becomes
// TicketWaiting and UserID, ScannedAt and DecidedAt are cleared; a zero
// CreatedAt is set to now. Like the PostgreSQL foreign key, the client must
// exist.
func (s *Store) CreateLoginTicket(ctx context.Context, t *storage.LoginTicket) error {
	tx, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.tickets[t.ID]; ok {
		return fmt.Errorf("memory: login ticket: %w", storage.ErrAlreadyExists)
	}
	if _, ok := s.clients[t.ClientID]; !ok {
		return fmt.Errorf("memory: login ticket: client %q does not exist", t.ClientID)
	}
	t.State, t.UserID, t.ScannedAt, t.DecidedAt = storage.TicketWaiting, "", time.Time{}, time.Time{}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	stored := copyTicket(*t)
	stored.CreatedAt, stored.ExpiresAt = usec(t.CreatedAt), usec(t.ExpiresAt)
	put(tx, s.tickets, t.ID, *stored)
	return nil
}

// GetLoginTicket returns a copy of the ticket, expired or not.
func (s *Store) GetLoginTicket(ctx context.Context, id string) (*storage.LoginTicket, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	t, ok := s.tickets[id]
	if !ok {
		return nil, fmt.Errorf("memory: login ticket: %w", storage.ErrNotFound)
	}
	return copyTicket(t), nil
}

// ScanLoginTicket binds a waiting, unexpired ticket to userID; the store
// mutex makes the check and the change one step, as the PostgreSQL
// backend's conditional UPDATE does.
func (s *Store) ScanLoginTicket(ctx context.Context, id, userID string, now time.Time) (*storage.LoginTicket, error) {
	tx, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	t, ok := s.tickets[id]
	if !ok {
		return nil, fmt.Errorf("memory: scan login ticket: %w", storage.ErrNotFound)
	}
	if t.State != storage.TicketWaiting || t.Expired(now) {
		return loginOutcome("memory: scan login ticket", t, now, func(t *storage.LoginTicket) bool {
			return t.State == storage.TicketScanned && t.UserID == userID
		})
	}
	if _, ok := s.users[userID]; !ok {
		return nil, fmt.Errorf("memory: scan login ticket: user %q does not exist", userID)
	}
	t.State, t.UserID, t.ScannedAt = storage.TicketScanned, userID, usec(now)
	put(tx, s.tickets, id, t)
	return copyTicket(t), nil
}

// DecideLoginTicket moves a ticket userID scanned to `to`.
func (s *Store) DecideLoginTicket(ctx context.Context, id, userID string, to storage.TicketState, now, completeBy time.Time) (*storage.LoginTicket, error) {
	const op = "memory: decide login ticket"
	if to != storage.TicketApproved && to != storage.TicketDenied {
		return nil, fmt.Errorf("%s: %q is not a decision", op, to)
	}
	tx, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	t, ok := s.tickets[id]
	if !ok {
		return nil, fmt.Errorf("%s: %w", op, storage.ErrNotFound)
	}
	if t.State != storage.TicketScanned || t.UserID != userID || t.Expired(now) {
		return loginOutcome(op, t, now, func(t *storage.LoginTicket) bool { return t.State == to && t.UserID == userID })
	}
	t.State, t.DecidedAt, t.ExpiresAt = to, usec(now), usec(completeBy)
	put(tx, s.tickets, id, t)
	return copyTicket(t), nil
}

// ConsumeLoginTicket ends a decided ticket held by browserHash and returns
// it with the decision it had.
func (s *Store) ConsumeLoginTicket(ctx context.Context, id, browserHash string, now time.Time) (*storage.LoginTicket, error) {
	const op = "memory: consume login ticket"
	tx, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	t, ok := s.tickets[id]
	if !ok || t.BrowserHash != browserHash {
		// Another browser's ticket reads as unknown.
		return nil, fmt.Errorf("%s: %w", op, storage.ErrNotFound)
	}
	if (t.State != storage.TicketApproved && t.State != storage.TicketDenied) || t.Expired(now) {
		return loginOutcome(op, t, now, nil)
	}
	decided := copyTicket(t)
	t.State = storage.TicketConsumed
	put(tx, s.tickets, id, t)
	return decided, nil
}

// RetireLoginTicket ends the browser's ticket, whatever its state.
func (s *Store) RetireLoginTicket(ctx context.Context, id, browserHash string) error {
	tx, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	t, ok := s.tickets[id]
	if !ok || t.BrowserHash != browserHash {
		return fmt.Errorf("memory: retire login ticket: %w", storage.ErrNotFound)
	}
	if t.State != storage.TicketConsumed {
		t.State = storage.TicketConsumed
		put(tx, s.tickets, id, t)
	}
	return nil
}

// loginOutcome classifies a ticket a state change did not apply to, as the
// PostgreSQL backend does: a consumed ticket conflicts, any other expired
// one is expired, a change already made (same) is no error, and anything
// else conflicts, returned with a copy of the ticket.
func loginOutcome(op string, t storage.LoginTicket, now time.Time, same func(*storage.LoginTicket) bool) (*storage.LoginTicket, error) {
	out := copyTicket(t)
	switch {
	case t.State != storage.TicketConsumed && t.Expired(now):
		return nil, fmt.Errorf("%s: %w", op, storage.ErrExpired)
	case same != nil && same(out):
		return out, nil
	default:
		return out, fmt.Errorf("%s: ticket is %s: %w", op, t.State, storage.ErrConflict)
	}
}

// CreateBrowserSession stores a copy of bs; a zero CreatedAt is set to now.
// Like the PostgreSQL foreign key, the user must exist.
func (s *Store) CreateBrowserSession(ctx context.Context, bs *storage.BrowserSession) error {
	tx, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.sessions[bs.ID]; ok {
		return fmt.Errorf("memory: browser session: %w", storage.ErrAlreadyExists)
	}
	if _, ok := s.users[bs.UserID]; !ok {
		return fmt.Errorf("memory: browser session: user %q does not exist", bs.UserID)
	}
	if bs.CreatedAt.IsZero() {
		bs.CreatedAt = now()
	}
	stored := *bs
	stored.AMR = slices.Clone(bs.AMR)
	stored.AuthTime, stored.CreatedAt, stored.ExpiresAt = usec(bs.AuthTime), usec(bs.CreatedAt), usec(bs.ExpiresAt)
	put(tx, s.sessions, bs.ID, stored)
	return nil
}

// GetBrowserSession returns a copy of the session unless it expired by now.
func (s *Store) GetBrowserSession(ctx context.Context, id string, now time.Time) (*storage.BrowserSession, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	bs, ok := s.sessions[id]
	if !ok || !now.Before(bs.ExpiresAt) {
		return nil, fmt.Errorf("memory: browser session: %w", storage.ErrNotFound)
	}
	bs.AMR = slices.Clone(bs.AMR)
	return &bs, nil
}

// DeleteBrowserSession removes the session; nil if absent.
func (s *Store) DeleteBrowserSession(ctx context.Context, id string) error {
	tx, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	drop(tx, s.sessions, id)
	return nil
}

// usec cuts t to what PostgreSQL keeps, in UTC, so both backends hand back
// the same times.
func usec(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
