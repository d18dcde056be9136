package storage

import (
	"context"
	"errors"
	"time"
)

// Scan-to-login keeps two kinds of record: the login ticket a QR code
// stands for, and the browser session a completed login leaves behind.

var (
	// ErrConflict is returned by a state change the record's state does
	// not allow (a ticket another user scanned, a ticket not yet approved);
	// nothing was written.
	ErrConflict = errors.New("storage: conflicts with the record's state")
	// ErrExpired is returned by a state change of a record past its expiry;
	// nothing was written.
	ErrExpired = errors.New("storage: expired")
)

// TicketState is where a login ticket is in its life:
// waiting -> scanned -> approved|denied -> consumed. A ticket past
// ExpiresAt that is not consumed is expired, whatever its state says.
type TicketState string

const (
	TicketWaiting  TicketState = "waiting"
	TicketScanned  TicketState = "scanned"
	TicketApproved TicketState = "approved"
	TicketDenied   TicketState = "denied"
	TicketConsumed TicketState = "consumed"
)

// LoginTicket is one scan-to-login attempt: a browser waits on it at
// /login while a mini-program user scans and decides it.
type LoginTicket struct {
	// ID is the ticket as the QR code carries it (WeChat's scene: at most
	// 32 characters); it is public to whoever sees the screen.
	ID string
	// BrowserHash is HashKey of the secret in the waiting browser's
	// cookie: only that browser may follow the ticket and complete it.
	BrowserHash string
	ClientID    string
	// Request is the authorization request's query string, replayed
	// through the authorization endpoint's rules when the ticket completes.
	Request string
	// Scopes are the scopes the client asked for, shown to the approver.
	Scopes []string
	State  TicketState
	// UserID is the user who scanned; empty while waiting.
	UserID string
	// SourceIP and UserAgent describe the browser that opened the page,
	// shown to the approver (UserAgent cut to 256 bytes by the caller).
	SourceIP  string
	UserAgent string
	CreatedAt time.Time
	ExpiresAt time.Time
	// ScannedAt and DecidedAt are zero until the ticket reaches that state.
	ScannedAt time.Time
	DecidedAt time.Time
}

// Expired reports whether t can no longer change state at now.
func (t *LoginTicket) Expired(now time.Time) bool { return !now.Before(t.ExpiresAt) }

// BrowserSession is a browser's login at the authorization endpoint. ID is
// HashKey of the cookie value; the cookie itself is never stored.
type BrowserSession struct {
	ID     string
	UserID string
	// AuthTime is when the user last authenticated (approved a scan); it
	// becomes the ID token's auth_time.
	AuthTime  time.Time
	AMR       []string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// LoginStore keeps login tickets and browser sessions. Every state change
// is one conditional write: of any number of concurrent calls on a ticket,
// exactly the ones the state allows succeed. A refused change checks expiry
// first: a ticket past ExpiresAt gets ErrExpired even for a repeat that
// would otherwise succeed, except a consumed one, which gets ErrConflict.
// Times are kept to the microsecond.
type LoginStore interface {
	// CreateLoginTicket stores a new ticket (State waiting): it sets
	// t.State to TicketWaiting and clears UserID, ScannedAt and DecidedAt;
	// a zero CreatedAt is set to now. ErrAlreadyExists if the ID is taken.
	CreateLoginTicket(ctx context.Context, t *LoginTicket) error
	// GetLoginTicket returns the ticket, expired or not, or ErrNotFound.
	GetLoginTicket(ctx context.Context, id string) (*LoginTicket, error)
	// ScanLoginTicket binds a waiting, unexpired ticket to userID (State
	// scanned, ScannedAt now) and returns it. Scanning again by the same
	// user returns it unchanged. ErrConflict when another user scanned it
	// or it was already decided (the ticket is returned with the error),
	// ErrExpired when past ExpiresAt, ErrNotFound when unknown.
	ScanLoginTicket(ctx context.Context, id, userID string, now time.Time) (*LoginTicket, error)
	// DecideLoginTicket moves a ticket scanned by userID to `to`
	// (TicketApproved or TicketDenied), sets DecidedAt to now and ExpiresAt
	// to completeBy (the browser's time to complete), and returns it. The
	// same decision again by the same user returns it unchanged.
	// ErrConflict when not scanned, scanned by another user, or decided
	// otherwise (the ticket is returned with the error); ErrExpired when
	// past ExpiresAt; ErrNotFound when unknown.
	DecideLoginTicket(ctx context.Context, id, userID string, to TicketState, now, completeBy time.Time) (*LoginTicket, error)
	// ConsumeLoginTicket ends a decided, unexpired ticket whose
	// BrowserHash is browserHash (State consumed) and returns it with the
	// decided State (approved or denied) it had: exactly one of concurrent
	// calls succeeds. ErrNotFound when unknown or held by another browser;
	// ErrConflict when not decided yet or already consumed (returned with
	// the ticket); ErrExpired when past ExpiresAt.
	ConsumeLoginTicket(ctx context.Context, id, browserHash string, now time.Time) (*LoginTicket, error)

	// RetireLoginTicket ends a ticket of the browser whose BrowserHash is
	// browserHash whatever its state (State consumed), when the browser
	// asks for a new code: the old QR code must not stay approvable, or
	// whoever saw it could approve it as themselves for a page the browser
	// may return to. nil when already consumed; ErrNotFound when unknown or
	// another browser's.
	RetireLoginTicket(ctx context.Context, id, browserHash string) error

	// CreateBrowserSession stores s (a zero CreatedAt is set to now);
	// ErrAlreadyExists if the ID is taken.
	CreateBrowserSession(ctx context.Context, s *BrowserSession) error
	// GetBrowserSession returns an unexpired session (at now), else
	// ErrNotFound.
	GetBrowserSession(ctx context.Context, id string, now time.Time) (*BrowserSession, error)
	// DeleteBrowserSession removes the session; nil if absent.
	DeleteBrowserSession(ctx context.Context, id string) error
}
