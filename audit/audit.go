package audit

import (
	"context"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wxidp/wxidp/storage"
)

// Type is an event type; operators filter on it (GET /admin/audit?type=).
type Type string

// The event types (docs/operations.md, "Audit events", describes each).
const (
	ClientCreated      Type = "client.created"
	ClientUpdated      Type = "client.updated"
	ClientSecretReset  Type = "client.secret_reset"
	ClientDeleted      Type = "client.deleted"
	KeyRotated         Type = "key.rotated"
	KeyRevoked         Type = "key.revoked"
	SecretsReencrypted Type = "secrets.reencrypted"
	RefreshTokenReused Type = "refresh_token.reused"
	AuthLockout        Type = "auth.lockout"
	WeChatRiskRefused  Type = "wechat.risk_refused"
	// A user's events name only the subject: after an erasure the trail
	// keeps the event and the erased subject id, nothing personal.
	UserDisabled Type = "user.disabled"
	UserEnabled  Type = "user.enabled"
	UserDeleted  Type = "user.deleted"
)

// Known reports whether t is one of the event types, for validating filters.
func (t Type) Known() bool {
	switch t {
	case ClientCreated, ClientUpdated, ClientSecretReset, ClientDeleted, KeyRotated, KeyRevoked,
		SecretsReencrypted, RefreshTokenReused, AuthLockout, WeChatRiskRefused,
		UserDisabled, UserEnabled, UserDeleted:
		return true
	}
	return false
}

// Outcome says how the action ended.
type Outcome string

// The outcomes.
const (
	Success Outcome = "success"
	Failure Outcome = "failure"
	// Denied: the request was refused (a lockout, a WeChat risk refusal).
	Denied Outcome = "denied"
	// Revoked: reuse of a refresh token revoked its whole chain.
	Revoked Outcome = "revoked"
)

// Actors that are not a client.
const (
	ActorSystem = "system" // the server itself (start-up re-encryption)
	ActorCLI    = "cli"    // a wxidp command (or the admin API called by one)
	ActorAdmin  = "admin-api"
	// ActorUser: the user themself (DELETE /account); the target names them.
	ActorUser = "user"
)

// ClientActor names a client as the actor of a security event.
func ClientActor(clientID string) string { return "client:" + clientID }

// Event is what a caller records; the Recorder adds time, request ID and
// source.
type Event struct {
	Type    Type
	Actor   string
	Target  string
	Outcome Outcome
	// Details are non-secret facts only.
	Details map[string]string
	// Source overrides the address from the context (a lockout reported
	// with its own).
	Source string
	// NoSource records no address at all: a person's own erasure keeps
	// nothing about them but the subject.
	NoSource bool
}

// Store is where events go.
type Store interface {
	AppendAudit(ctx context.Context, e *storage.AuditEvent) error
}

// Recorder records events. A nil *Recorder records nothing, so code built
// without an audit trail (unit tests) needs no stub.
type Recorder struct {
	store Store
	log   *slog.Logger
	now   func() time.Time
	// timeout bounds one append, whatever the request's own state.
	timeout time.Duration
}

// appendTimeout bounds an append when the store has no deadline of its own.
const appendTimeout = 5 * time.Second

// NewRecorder returns a recorder appending to store and logging failures to
// log (nil: discarded).
func NewRecorder(store Store, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{store: store, log: log, now: time.Now, timeout: appendTimeout}
}

type requestKey struct{}

type requestInfo struct{ id, source string }

// WithRequest returns ctx carrying the request ID and source address that
// events recorded under it will name.
func WithRequest(ctx context.Context, requestID, source string) context.Context {
	return context.WithValue(ctx, requestKey{}, requestInfo{id: requestID, source: source})
}

// Record stores e, stamped with the time and the context's request ID and
// source. A failure is logged, never returned: the action has happened (or
// been refused) whether or not its record could be kept. The append does
// not inherit ctx's cancellation, so a client hanging up right after its
// request does not erase the record of it.
func (r *Recorder) Record(ctx context.Context, e Event) {
	if r == nil {
		return
	}
	info, _ := ctx.Value(requestKey{}).(requestInfo)
	source := info.source
	if e.Source != "" {
		source = e.Source
	}
	if e.NoSource {
		source = ""
	}
	rec := &storage.AuditEvent{
		Time: r.now(), Type: string(e.Type), Actor: bound(e.Actor), Source: bound(source), RequestID: bound(info.id),
		Target: bound(e.Target), Outcome: string(e.Outcome), Details: boundDetails(e.Details),
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	defer cancel()
	if err := r.store.AppendAudit(actx, rec); err != nil {
		// The event's fields are not secret, so the log can stand in for
		// the lost row.
		r.log.Error("audit event not stored", "type", rec.Type, "actor", rec.Actor, "target", rec.Target,
			"outcome", rec.Outcome, "source", rec.Source, "request_id", rec.RequestID, "err", err)
	}
}

// MaxValueLen bounds, in bytes, each free-text value of an event (actor,
// target, source, request ID, each detail). Some come from request input
// (a lockout's target is the client_id as sent): unbounded, anyone could
// fill the trail, break its index (PostgreSQL's btree refuses entries
// past about 2.7 kB) and flood the log that stands in for a lost row.
const MaxValueLen = 256

// bound makes v storable and bounded: valid UTF-8 without NUL (which
// PostgreSQL text refuses), at most MaxValueLen bytes, cut on a character
// boundary and marked with "…" when cut.
func bound(v string) string {
	v = strings.ReplaceAll(strings.ToValidUTF8(v, "\uFFFD"), "\x00", "\uFFFD")
	if len(v) <= MaxValueLen {
		return v
	}
	const mark = "…"
	cut := MaxValueLen - len(mark)
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + mark
}

// boundDetails bounds every key and value of d (a copy; d is the caller's).
func boundDetails(d map[string]string) map[string]string {
	if d == nil {
		return nil
	}
	out := make(map[string]string, len(d))
	for k, v := range d {
		out[bound(k)] = bound(v)
	}
	return out
}

// Lockout records that failed authentications of clientID from source
// (the limiter's key: an IPv4 address, or an IPv6 /64) reached the limit
// and further attempts from there are refused. Its signature is the
// limiter's OnLockout callback. The event's source is the request's own
// address when the context has it, and the locked-out key is in the
// details (limited_source): for IPv6 the two differ.
func (r *Recorder) Lockout(ctx context.Context, clientID, source string) {
	e := Event{Type: AuthLockout, Actor: "anonymous", Target: clientID, Outcome: Denied,
		Details: map[string]string{"limited_source": source}}
	if info, _ := ctx.Value(requestKey{}).(requestInfo); info.source == "" {
		e.Source = source
	}
	r.Record(ctx, e)
}

// RefreshReuse records that clientID presented a refresh token that was
// already rotated or revoked, which revokes every token of its chain
// (chainID is the chain's request ID, never a token); revoked says whether
// the revocation succeeded.
func (r *Recorder) RefreshReuse(ctx context.Context, clientID, chainID string, revoked bool) {
	outcome := Revoked
	if !revoked {
		outcome = Failure
	}
	r.Record(ctx, Event{Type: RefreshTokenReused, Actor: ClientActor(clientID), Target: clientID, Outcome: outcome,
		Details: map[string]string{"chain_request_id": chainID}})
}

// WeChatRiskRefused records that WeChat refused a login of clientID's
// mini-program (appID) as high-risk (errcode 40226).
func (r *Recorder) WeChatRiskRefused(ctx context.Context, clientID, appID string) {
	r.Record(ctx, Event{Type: WeChatRiskRefused, Actor: ClientActor(clientID), Target: clientID, Outcome: Denied,
		Details: map[string]string{"wechat_appid": appID}})
}

// ScheduledRotation records a signing-key rotation the server made on its
// schedule (keys.Options.OnScheduledRotation); rotations asked for through
// the admin API are recorded by its handler.
func (r *Recorder) ScheduledRotation(ctx context.Context, activeKID, retiredKID string) {
	r.Record(ctx, Event{Type: KeyRotated, Actor: ActorSystem, Target: activeKID, Outcome: Success,
		Details: map[string]string{"retired_kid": retiredKID}})
}
