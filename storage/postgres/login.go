package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/storage"
)

// How the ticket state changes stay race-free: each is one UPDATE whose
// WHERE is the state it moves from, on the primary key. Concurrent changes
// of one ticket serialize on its row lock; READ COMMITTED re-checks the
// WHERE against the winner's committed row, so every loser matches nothing
// (zero rows) and nothing is written twice. Only then does one plain read
// tell the caller why: that read decides nothing, it only explains.

// ticketColumns is what every ticket query selects, in ticketDest order.
const ticketColumns = `id, browser_hash, client_id, request, scopes, state, user_id, source_ip, user_agent,
	created_at, expires_at, scanned_at, decided_at`

// scannedTicket holds the nullable columns of a ticket while it is scanned.
type scannedTicket struct {
	t                    storage.LoginTicket
	state                string
	userID               *string
	scannedAt, decidedAt *time.Time
}

func (st *scannedTicket) dest() []any {
	return []any{&st.t.ID, &st.t.BrowserHash, &st.t.ClientID, &st.t.Request, &st.t.Scopes, &st.state, &st.userID,
		&st.t.SourceIP, &st.t.UserAgent, &st.t.CreatedAt, &st.t.ExpiresAt, &st.scannedAt, &st.decidedAt}
}

// ticket returns the scanned ticket, its times in UTC.
func (st *scannedTicket) ticket() *storage.LoginTicket {
	t := st.t
	t.State = storage.TicketState(st.state)
	if st.userID != nil {
		t.UserID = *st.userID
	}
	t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
	t.ScannedAt, t.DecidedAt = zeroTime(st.scannedAt), zeroTime(st.decidedAt)
	return &t
}

// queryTicket runs a statement returning one row of ticketColumns.
func (s *Store) queryTicket(ctx context.Context, sql string, args ...any) (*storage.LoginTicket, error) {
	var st scannedTicket
	if err := s.db(ctx).QueryRow(ctx, sql, args...).Scan(st.dest()...); err != nil {
		return nil, err
	}
	return st.ticket(), nil
}

// CreateLoginTicket stores t as waiting: State becomes TicketWaiting and
// UserID, ScannedAt and DecidedAt are cleared; a zero CreatedAt is set to
// now.
func (s *Store) CreateLoginTicket(ctx context.Context, t *storage.LoginTicket) error {
	t.State, t.UserID, t.ScannedAt, t.DecidedAt = storage.TicketWaiting, "", time.Time{}, time.Time{}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO login_tickets (id, browser_hash, client_id, request, scopes, state,
		source_ip, user_agent, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		t.ID, t.BrowserHash, t.ClientID, t.Request, strs(t.Scopes), string(t.State), t.SourceIP, t.UserAgent,
		t.CreatedAt, t.ExpiresAt)
	return recordErr("create login ticket", err)
}

// GetLoginTicket returns the ticket, expired or not.
func (s *Store) GetLoginTicket(ctx context.Context, id string) (*storage.LoginTicket, error) {
	t, err := s.queryTicket(ctx, `SELECT `+ticketColumns+` FROM login_tickets WHERE id = $1`, id)
	if err != nil {
		return nil, recordErr("get login ticket", err)
	}
	return t, nil
}

// ScanLoginTicket binds a waiting, unexpired ticket to userID.
func (s *Store) ScanLoginTicket(ctx context.Context, id, userID string, now time.Time) (*storage.LoginTicket, error) {
	const op = "scan login ticket"
	now = now.UTC().Truncate(time.Microsecond)
	t, err := s.queryTicket(ctx, `UPDATE login_tickets SET state = 'scanned', user_id = $2, scanned_at = $3
		WHERE id = $1 AND state = 'waiting' AND expires_at > $3
		RETURNING `+ticketColumns, id, userID, now)
	if !errors.Is(err, pgx.ErrNoRows) {
		return t, recordErr(op, err)
	}
	return s.refusal(ctx, op, id, now, func(t *storage.LoginTicket) bool {
		return t.State == storage.TicketScanned && t.UserID == userID
	})
}

// DecideLoginTicket moves a ticket userID scanned to `to`.
func (s *Store) DecideLoginTicket(ctx context.Context, id, userID string, to storage.TicketState, now, completeBy time.Time) (*storage.LoginTicket, error) {
	const op = "decide login ticket"
	if to != storage.TicketApproved && to != storage.TicketDenied {
		return nil, fmt.Errorf("postgres: %s: %q is not a decision", op, to)
	}
	now = now.UTC().Truncate(time.Microsecond)
	t, err := s.queryTicket(ctx, `UPDATE login_tickets SET state = $3, decided_at = $4, expires_at = $5
		WHERE id = $1 AND state = 'scanned' AND user_id = $2 AND expires_at > $4
		RETURNING `+ticketColumns, id, userID, string(to), now, completeBy)
	if !errors.Is(err, pgx.ErrNoRows) {
		return t, recordErr(op, err)
	}
	return s.refusal(ctx, op, id, now, func(t *storage.LoginTicket) bool {
		return t.State == to && t.UserID == userID
	})
}

// consumeTicket ends a decided ticket and returns the decision it had. The
// CTE locks the row and, if it had to wait for a concurrent change, reads
// the row as that change left it (READ COMMITTED re-checks a locked row),
// so `prior` is the state the UPDATE replaces; RETURNING alone sees only
// the new one.
const consumeTicket = `WITH prior AS (
		SELECT id, state FROM login_tickets
		WHERE id = $1 AND browser_hash = $2 AND state IN ('approved', 'denied') AND expires_at > $3
		FOR UPDATE
	)
	UPDATE login_tickets t SET state = 'consumed' FROM prior WHERE t.id = prior.id
	RETURNING t.id, t.browser_hash, t.client_id, t.request, t.scopes, prior.state, t.user_id, t.source_ip,
		t.user_agent, t.created_at, t.expires_at, t.scanned_at, t.decided_at`

// ConsumeLoginTicket ends a decided ticket held by browserHash.
func (s *Store) ConsumeLoginTicket(ctx context.Context, id, browserHash string, now time.Time) (*storage.LoginTicket, error) {
	const op = "consume login ticket"
	t, err := s.queryTicket(ctx, consumeTicket, id, browserHash, now)
	if !errors.Is(err, pgx.ErrNoRows) {
		return t, recordErr(op, err)
	}
	t, err = s.GetLoginTicket(ctx, id)
	if err == nil && t.BrowserHash != browserHash {
		// Another browser's ticket: as if unknown, saying nothing about it.
		return nil, fmt.Errorf("postgres: %s: %w", op, storage.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return loginOutcome("postgres: "+op, t, now, nil)
}

// RetireLoginTicket ends the browser's ticket, whatever its state.
func (s *Store) RetireLoginTicket(ctx context.Context, id, browserHash string) error {
	const op = "retire login ticket"
	var mine bool
	err := s.db(ctx).QueryRow(ctx, `WITH r AS (
			UPDATE login_tickets SET state = 'consumed'
			WHERE id = $1 AND browser_hash = $2 AND state <> 'consumed' RETURNING 1)
		SELECT browser_hash = $2 FROM login_tickets WHERE id = $1`, id, browserHash).Scan(&mine)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !mine {
		// Unknown, or another browser's: as if unknown.
		return fmt.Errorf("postgres: %s: %w", op, storage.ErrNotFound)
	}
	return recordErr(op, err)
}

// refusal answers a state change that matched no row: ErrNotFound for an
// unknown ticket, the ticket and no error when same says the change had
// already been made, else ErrExpired or ErrConflict.
func (s *Store) refusal(ctx context.Context, op, id string, now time.Time, same func(*storage.LoginTicket) bool) (*storage.LoginTicket, error) {
	t, err := s.GetLoginTicket(ctx, id)
	if err != nil {
		return nil, err
	}
	return loginOutcome("postgres: "+op, t, now, same)
}

// loginOutcome classifies a ticket a state change did not apply to. A
// consumed ticket is over, so it conflicts rather than expires; otherwise
// expiry comes first, so a ticket past its time never succeeds, not even
// as a repeat.
func loginOutcome(op string, t *storage.LoginTicket, now time.Time, same func(*storage.LoginTicket) bool) (*storage.LoginTicket, error) {
	switch {
	case t.State != storage.TicketConsumed && t.Expired(now):
		return nil, fmt.Errorf("%s: %w", op, storage.ErrExpired)
	case same != nil && same(t):
		return t, nil
	default:
		return t, fmt.Errorf("%s: ticket is %s: %w", op, t.State, storage.ErrConflict)
	}
}

// CreateBrowserSession stores bs; a zero CreatedAt is set to now.
func (s *Store) CreateBrowserSession(ctx context.Context, bs *storage.BrowserSession) error {
	if bs.CreatedAt.IsZero() {
		bs.CreatedAt = now()
	}
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO browser_sessions (id, user_id, auth_time, amr, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, bs.ID, bs.UserID, bs.AuthTime, strs(bs.AMR), bs.CreatedAt, bs.ExpiresAt)
	return recordErr("create browser session", err)
}

// GetBrowserSession returns the session unless it expired by now.
func (s *Store) GetBrowserSession(ctx context.Context, id string, now time.Time) (*storage.BrowserSession, error) {
	var bs storage.BrowserSession
	err := s.db(ctx).QueryRow(ctx, `SELECT id, user_id, auth_time, amr, created_at, expires_at FROM browser_sessions
		WHERE id = $1 AND expires_at > $2`, id, now).
		Scan(&bs.ID, &bs.UserID, &bs.AuthTime, &bs.AMR, &bs.CreatedAt, &bs.ExpiresAt)
	if err != nil {
		return nil, recordErr("get browser session", err)
	}
	bs.AuthTime, bs.CreatedAt, bs.ExpiresAt = bs.AuthTime.UTC(), bs.CreatedAt.UTC(), bs.ExpiresAt.UTC()
	return &bs, nil
}

// DeleteBrowserSession removes the session; nil if absent.
func (s *Store) DeleteBrowserSession(ctx context.Context, id string) error {
	_, err := s.db(ctx).Exec(ctx, `DELETE FROM browser_sessions WHERE id = $1`, id)
	return recordErr("delete browser session", err)
}
