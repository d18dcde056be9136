package provider

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ory/fosite"
	fstorage "github.com/ory/fosite/storage"

	"github.com/wxidp/wxidp/provider/scan"
	"github.com/wxidp/wxidp/storage"
)

// Scan-to-login: the authorization endpoint parks a request on a login
// ticket; the mini-program user scans and decides it; the waiting browser
// completes it. Every step is one conditional write in storage, and the
// completion (ticket consumed, browser session, authorization code) is one
// transaction, so a failure leaves the ticket approved and retryable.

// LoginConfig sets scan-to-login's lifetimes; zero fields take defaults.
type LoginConfig struct {
	// TicketTTL is how long a QR code may be scanned and decided (2 min).
	TicketTTL time.Duration
	// CompleteWithin is how long the browser has to complete a decided
	// ticket (1 min); it polls every second or two.
	CompleteWithin time.Duration
	// SessionTTL is how long a browser stays logged in here (24 h).
	SessionTTL time.Duration
}

func (c LoginConfig) withDefaults() LoginConfig {
	if c.TicketTTL <= 0 {
		c.TicketTTL = 2 * time.Minute
	}
	if c.CompleteWithin <= 0 {
		c.CompleteWithin = time.Minute
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 24 * time.Hour
	}
	return c
}

// Browser identifies the browser behind a page request.
type Browser struct {
	// Secret is the value of the browser's binding cookie (scan.NewSecret).
	Secret    string
	SourceIP  string
	UserAgent string
}

// maxUserAgent caps what a ticket keeps of the User-Agent header.
const maxUserAgent = 256

// StartLogin parks a validated authorization request on a new ticket bound
// to the browser.
func (p *Provider) StartLogin(ctx context.Context, ar fosite.AuthorizeRequester, b Browser) (*storage.LoginTicket, error) {
	return p.newTicket(ctx, ar.GetClient().GetID(), ar.GetRequestForm().Encode(), ar.GetRequestedScopes(), b)
}

func (p *Provider) newTicket(ctx context.Context, clientID, request string, scopes []string, b Browser) (*storage.LoginTicket, error) {
	now := p.now().UTC()
	ua := b.UserAgent
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	t := &storage.LoginTicket{
		ID: scan.NewTicketID(), BrowserHash: storage.HashKey(b.Secret), ClientID: clientID,
		Request: request, Scopes: scopes, State: storage.TicketWaiting,
		SourceIP: b.SourceIP, UserAgent: ua, CreatedAt: now, ExpiresAt: now.Add(p.login.TicketTTL),
	}
	if err := p.logins.CreateLoginTicket(ctx, t); err != nil {
		return nil, outage(err)
	}
	return t, nil
}

// RenewLogin replaces a ticket of this browser (expired, or the picture
// failed) with a new one for the same authorization request.
func (p *Provider) RenewLogin(ctx context.Context, ticket string, b Browser) (*storage.LoginTicket, error) {
	old, err := p.BrowserTicket(ctx, ticket, b.Secret)
	if err != nil {
		return nil, err
	}
	if old.State == storage.TicketConsumed {
		return nil, storage.ErrConflict
	}
	// The old code must die with the new one's birth: whoever saw it could
	// still approve it as themselves, and the browser may go back to it.
	ctx, err = fstorage.MaybeBeginTx(ctx, p.store)
	if err != nil {
		return nil, outage(err)
	}
	t, err := p.retireAndRenew(ctx, old, b)
	if err != nil {
		_ = fstorage.MaybeRollbackTx(ctx, p.store)
		return nil, err
	}
	if err := fstorage.MaybeCommitTx(ctx, p.store); err != nil {
		return nil, outage(err)
	}
	return t, nil
}

func (p *Provider) retireAndRenew(ctx context.Context, old *storage.LoginTicket, b Browser) (*storage.LoginTicket, error) {
	if err := p.logins.RetireLoginTicket(ctx, old.ID, old.BrowserHash); err != nil {
		return nil, outage(err)
	}
	return p.newTicket(ctx, old.ClientID, old.Request, old.Scopes, b)
}

// BrowserTicket returns a ticket to the browser it is bound to;
// storage.ErrNotFound for any other browser.
func (p *Provider) BrowserTicket(ctx context.Context, ticket, secret string) (*storage.LoginTicket, error) {
	if !scan.ValidTicketID(ticket) || !scan.ValidSecret(secret) {
		return nil, storage.ErrNotFound
	}
	t, err := p.logins.GetLoginTicket(ctx, ticket)
	if err != nil {
		return nil, outage(err)
	}
	if t.BrowserHash != storage.HashKey(secret) {
		return nil, storage.ErrNotFound
	}
	return t, nil
}

// TicketClient returns the client a ticket logs into.
func (p *Provider) TicketClient(ctx context.Context, t *storage.LoginTicket) (*storage.Client, error) {
	c, err := p.clients.GetClient(ctx, t.ClientID)
	if err != nil {
		if errors.Is(err, fosite.ErrNotFound) {
			return nil, storage.ErrNotFound
		}
		return nil, outage(err)
	}
	return c.(*storage.OAuthClient).Record, nil
}

// LoginPicture draws the QR picture of the browser's ticket.
func (p *Provider) LoginPicture(ctx context.Context, ticket, secret string) (scan.Picture, error) {
	t, err := p.BrowserTicket(ctx, ticket, secret)
	if err != nil {
		return scan.Picture{}, err
	}
	// Only a code someone may still scan is drawn: each mini-program code
	// spends the app's WeChat quota.
	if t.Expired(p.now()) {
		return scan.Picture{}, storage.ErrExpired
	}
	if t.State != storage.TicketWaiting {
		return scan.Picture{}, storage.ErrConflict
	}
	c, err := p.TicketClient(ctx, t)
	if err != nil {
		return scan.Picture{}, err
	}
	return p.pictures.For(ctx, c, t.ID)
}

// UserTicket is what the mini-program shows before the user approves.
type UserTicket struct {
	Ticket     *storage.LoginTicket
	ClientName string
}

// ViewTicket returns a ticket to a mini-program user: while it waits, or
// once that user scanned it; storage.ErrConflict when someone else did.
func (p *Provider) ViewTicket(ctx context.Context, ticket, userID string) (*UserTicket, error) {
	if !scan.ValidTicketID(ticket) {
		return nil, storage.ErrNotFound
	}
	t, err := p.logins.GetLoginTicket(ctx, ticket)
	if err != nil {
		return nil, outage(err)
	}
	if t.UserID != "" && t.UserID != userID {
		return nil, storage.ErrConflict
	}
	if t.State != storage.TicketConsumed && t.Expired(p.now()) {
		return nil, storage.ErrExpired
	}
	c, err := p.TicketClient(ctx, t)
	if err != nil {
		return nil, err
	}
	return &UserTicket{Ticket: t, ClientName: c.Name}, nil
}

// ScanTicket binds the ticket to the user who scanned it.
func (p *Provider) ScanTicket(ctx context.Context, ticket, userID string) (*storage.LoginTicket, error) {
	if !scan.ValidTicketID(ticket) {
		return nil, storage.ErrNotFound
	}
	t, err := p.logins.ScanLoginTicket(ctx, ticket, userID, p.now().UTC())
	return t, outage(err)
}

// DecideTicket approves or denies a ticket the user scanned.
func (p *Provider) DecideTicket(ctx context.Context, ticket, userID string, approve bool) (*storage.LoginTicket, error) {
	if !scan.ValidTicketID(ticket) {
		return nil, storage.ErrNotFound
	}
	to := storage.TicketDenied
	if approve {
		to = storage.TicketApproved
	}
	now := p.now().UTC()
	t, err := p.logins.DecideLoginTicket(ctx, ticket, userID, to, now, now.Add(p.login.CompleteWithin))
	return t, outage(err)
}

// Completion is a completed login: the authorization answer to write and
// the browser's new session (its cookie value; empty on a denial).
type Completion struct {
	Request       fosite.AuthorizeRequester
	Response      fosite.AuthorizeResponder
	SessionSecret string
	SessionTTL    time.Duration
}

// CompleteLogin ends the browser's decided ticket: an approved one gives
// the browser a session and the client an authorization code, in one
// transaction; a denied one access_denied. Errors: storage.ErrNotFound
// (unknown, or another browser's), storage.ErrConflict (not decided yet,
// or already used), storage.ErrExpired; an error wrapping ErrBadRedirect
// (the client's registration changed meanwhile) is shown as a page, any
// other RFC 6749 error goes back to the client with the returned request.
func (p *Provider) CompleteLogin(ctx context.Context, ticket, secret string) (c *Completion, err error) {
	if !scan.ValidTicketID(ticket) || !scan.ValidSecret(secret) {
		return nil, storage.ErrNotFound
	}
	ctx, err = fstorage.MaybeBeginTx(ctx, p.store)
	if err != nil {
		return nil, outage(err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = fstorage.MaybeRollbackTx(ctx, p.store)
		}
	}()
	commit := func() error {
		committed = true
		return outage(fstorage.MaybeCommitTx(ctx, p.store))
	}
	now := p.now().UTC()
	t, err := p.logins.ConsumeLoginTicket(ctx, ticket, storage.HashKey(secret), now)
	if err != nil {
		return nil, outage(err)
	}
	ar, err := p.replay(ctx, t.Request)
	if err != nil || t.State == storage.TicketDenied {
		// The ticket is spent either way; the answer is an error.
		if cerr := commit(); cerr != nil {
			return nil, cerr
		}
		if err == nil {
			err = ErrAccessDenied
		}
		return &Completion{Request: ar}, err
	}
	// The code first: it checks that the user still exists (deleted
	// between approval and now: access_denied, the ticket spent).
	resp, err := p.GrantAuthorization(ctx, ar, t.UserID, t.DecidedAt, t.CreatedAt)
	if errors.Is(err, fosite.ErrAccessDenied) {
		if cerr := commit(); cerr != nil {
			return nil, cerr
		}
		return &Completion{Request: ar}, err
	}
	if err != nil {
		return &Completion{Request: ar}, err
	}
	sessSecret := scan.NewSecret()
	if err := p.logins.CreateBrowserSession(ctx, &storage.BrowserSession{
		ID: storage.HashKey(sessSecret), UserID: t.UserID, AuthTime: t.DecidedAt, AMR: []string{AMRScan},
		CreatedAt: now, ExpiresAt: now.Add(p.login.SessionTTL),
	}); err != nil {
		return nil, outage(err)
	}
	if err := commit(); err != nil {
		return nil, err
	}
	return &Completion{Request: ar, Response: resp, SessionSecret: sessSecret, SessionTTL: p.login.SessionTTL}, nil
}

// AuthorizeFromSession answers ar for the browser's existing login,
// writing the code's rows (code, PKCE, OpenID Connect session) in one
// transaction.
func (p *Provider) AuthorizeFromSession(ctx context.Context, ar fosite.AuthorizeRequester, s *storage.BrowserSession) (resp fosite.AuthorizeResponder, err error) {
	ctx, err = fstorage.MaybeBeginTx(ctx, p.store)
	if err != nil {
		return nil, outage(err)
	}
	resp, err = p.GrantAuthorization(ctx, ar, s.UserID, s.AuthTime, p.now())
	if err != nil {
		_ = fstorage.MaybeRollbackTx(ctx, p.store)
		return nil, err
	}
	if err := fstorage.MaybeCommitTx(ctx, p.store); err != nil {
		return nil, outage(err)
	}
	return resp, nil
}

// replay parses a ticket's stored authorization request again, so the
// client's registration as it is now decides (a redirect_uri removed
// meanwhile no longer receives the code).
func (p *Provider) replay(ctx context.Context, request string) (fosite.AuthorizeRequester, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.Issuer+AuthorizePath+"?"+request, nil)
	if err != nil {
		return nil, errors.Join(ErrBadRedirect, fosite.ErrServerError.WithWrap(err))
	}
	return p.ParseAuthorize(ctx, r)
}

// BrowserLogin returns the browser's session for the secret in its
// session cookie; storage.ErrNotFound when there is none (or it expired).
func (p *Provider) BrowserLogin(ctx context.Context, secret string) (*storage.BrowserSession, error) {
	if !scan.ValidSecret(secret) {
		return nil, storage.ErrNotFound
	}
	s, err := p.logins.GetBrowserSession(ctx, storage.HashKey(secret), p.now().UTC())
	if err != nil {
		return nil, outage(err)
	}
	return s, nil
}

// EndBrowserLogin deletes the browser's session (logout).
func (p *Provider) EndBrowserLogin(ctx context.Context, secret string) error {
	if !scan.ValidSecret(secret) {
		return nil
	}
	return outage(p.logins.DeleteBrowserSession(ctx, storage.HashKey(secret)))
}

// Now is the provider's clock (web stamps pages with it).
func (p *Provider) Now() time.Time { return p.now() }
