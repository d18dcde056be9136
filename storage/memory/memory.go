package memory

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

var _ storage.Store = (*Store)(nil)

// errTxDone matches what a database driver reports for a finished
// transaction, so code that reuses such a context fails in dev as in
// production.
var errTxDone = errors.New("memory: transaction already committed or rolled back")

// kind names one of fosite's request stores; each has its own key space.
type kind int

const (
	accessKind kind = iota
	refreshKind
	codeKind
	pkceKind
	oidcKind
	numKinds
)

var kindNames = [numKinds]string{"access token", "refresh token", "authorize code", "PKCE request", "OpenID Connect session"}

// row is a stored request. Rows are replaced, never edited in place, so the
// undo log can keep the old value as it is.
type row struct {
	rec storage.RequestRecord
	// active is false once a refresh token is rotated or revoked, or an
	// authorize code used.
	active bool
	// accessSig is the access token issued with a refresh token, deleted when
	// the refresh token is rotated.
	accessSig string
	// deactivatedAt is when a refresh token was rotated or revoked; zero
	// while active.
	deactivatedAt time.Time
	// graceUsed is set when a refresh token's grace retry is spent or it is
	// revoked: either way it has no grace left.
	graceUsed bool
}

// Store is an in-memory storage.Store. The zero value is not usable: call New.
type Store struct {
	mu      sync.Mutex
	clients map[string]storage.Client
	keys    map[string]storage.SigningKey
	rows    [numKinds]map[string]row
	jtis    map[string]time.Time
	leases  map[string]lease
	userData
	auditLog
	loginData
	// Options, fixed by New.
	grace time.Duration
	clock func() time.Time
}

// Option configures a Store.
type Option func(*Store)

// WithRefreshGrace sets the refresh grace period (storage.FositeStore): a
// refresh token rotated less than d ago can be rotated once more, so a client
// that lost the response to its refresh can retry. 0, the default, allows no
// retry.
func WithRefreshGrace(d time.Duration) Option {
	return func(s *Store) { s.grace = max(0, d.Truncate(time.Microsecond)) }
}

// WithClock sets the clock that stamps refresh token deactivation and judges
// the grace period against it (tests move it instead of sleeping). Other
// timestamps keep the real time. The default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.clock = now
		}
	}
}

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{
		clients:   map[string]storage.Client{},
		keys:      map[string]storage.SigningKey{},
		jtis:      map[string]time.Time{},
		leases:    map[string]lease{},
		userData:  newUserData(),
		loginData: newLoginData(),
		clock:     time.Now,
	}
	for k := range s.rows {
		s.rows[k] = map[string]row{}
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// clockNow reads the store's clock at the precision PostgreSQL keeps, so both
// backends judge the grace period alike.
func (s *Store) clockNow() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

// inGrace reports whether r is a rotated refresh token whose grace is still
// unused at now: rotated less than the grace period ago.
func (s *Store) inGrace(r row, now time.Time) bool {
	return s.grace > 0 && !r.active && !r.graceUsed && !r.deactivatedAt.IsZero() &&
		r.deactivatedAt.After(now.Add(-s.grace))
}

// Ping always succeeds: there is nothing to reach.
func (s *Store) Ping(context.Context) error { return nil }

// lock takes the store mutex and returns the transaction ctx carries for this
// store (nil outside one). On error the mutex is not held.
func (s *Store) lock(ctx context.Context) (*tx, error) {
	s.mu.Lock()
	t, _ := ctx.Value(txKey{s}).(*tx)
	if t != nil && t.done {
		s.mu.Unlock()
		return nil, errTxDone
	}
	return t, nil
}

// now is how the store stamps records: the precision PostgreSQL keeps, so
// both backends hand back the same values.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func copyClient(c *storage.Client) storage.Client {
	out := *c
	out.SecretHash = bytes.Clone(c.SecretHash)
	out.GrantTypes = slices.Clone(c.GrantTypes)
	out.Scopes = slices.Clone(c.Scopes)
	out.Audience = slices.Clone(c.Audience)
	out.RedirectURIs = slices.Clone(c.RedirectURIs)
	out.AllowedCORSOrigins = slices.Clone(c.AllowedCORSOrigins)
	out.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	out.WeChatAppSecret = bytes.Clone(c.WeChatAppSecret)
	return out
}

// CreateClient stores a copy of c.
func (s *Store) CreateClient(ctx context.Context, c *storage.Client) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.clients[c.ID]; ok {
		return fmt.Errorf("memory: client %q: %w", c.ID, storage.ErrAlreadyExists)
	}
	stamp := now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = stamp
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = stamp
	}
	put(t, s.clients, c.ID, copyClient(c))
	return nil
}

// LookupClient returns a copy the caller may change freely.
func (s *Store) LookupClient(ctx context.Context, id string) (*storage.Client, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("memory: client %q: %w", id, storage.ErrNotFound)
	}
	out := copyClient(&c)
	return &out, nil
}

// ListClients returns copies ordered by ID.
func (s *Store) ListClients(ctx context.Context) ([]storage.Client, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]storage.Client, 0, len(s.clients))
	for _, c := range s.clients {
		out = append(out, copyClient(&c))
	}
	slices.SortFunc(out, func(a, b storage.Client) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// UpdateClient replaces the client but keeps its ID and CreatedAt; with a
// non-zero ifUpdatedAt only while the stored UpdatedAt equals it.
func (s *Store) UpdateClient(ctx context.Context, c *storage.Client, ifUpdatedAt time.Time) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	old, ok := s.clients[c.ID]
	if !ok {
		return fmt.Errorf("memory: client %q: %w", c.ID, storage.ErrNotFound)
	}
	if !ifUpdatedAt.IsZero() && !old.UpdatedAt.Equal(ifUpdatedAt) {
		return fmt.Errorf("memory: client %q: %w", c.ID, storage.ErrStale)
	}
	c.CreatedAt = old.CreatedAt
	// UpdatedAt always moves forward, as in PostgreSQL: a later conditional
	// update compares against it.
	c.UpdatedAt = now()
	if next := old.UpdatedAt.Add(time.Microsecond); c.UpdatedAt.Before(next) {
		c.UpdatedAt = next
	}
	put(t, s.clients, c.ID, copyClient(c))
	return nil
}

// DeleteClient removes the client, every request issued to it and its
// login tickets, as the foreign keys of the PostgreSQL schema do: a client
// registered later under the same ID must not inherit its grants.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.clients[id]; !ok {
		return fmt.Errorf("memory: client %q: %w", id, storage.ErrNotFound)
	}
	drop(t, s.clients, id)
	for _, m := range s.rows {
		dropWhere(t, m, func(r row) bool { return r.rec.ClientID == id })
	}
	dropWhere(t, s.tickets, func(lt storage.LoginTicket) bool { return lt.ClientID == id })
	return nil
}

// CORSOriginAllowed reports whether origin is registered on client
// clientID, or on any client when clientID is empty.
func (s *Store) CORSOriginAllowed(ctx context.Context, origin, clientID string) (bool, error) {
	if _, err := s.lock(ctx); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	if clientID != "" {
		c, ok := s.clients[clientID]
		return ok && slices.Contains(c.AllowedCORSOrigins, origin), nil
	}
	for _, c := range s.clients {
		if slices.Contains(c.AllowedCORSOrigins, origin) {
			return true, nil
		}
	}
	return false, nil
}

// GetClient returns fosite's view of a copy of the client.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := s.LookupClient(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return storage.NewOAuthClient(c), nil
}

// ClientAssertionJWTValid reports fosite.ErrJTIKnown for a known jti that has
// not expired.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	if _, err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if exp, ok := s.jtis[jti]; ok && exp.After(time.Now()) {
		return fosite.ErrJTIKnown
	}
	return nil
}

// SetClientAssertionJWT records jti until exp, first forgetting expired ones
// so the map does not grow without bound.
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	cutoff := time.Now()
	for j, e := range s.jtis {
		if !e.After(cutoff) {
			drop(t, s.jtis, j)
		}
	}
	if _, ok := s.jtis[jti]; ok {
		return fosite.ErrJTIKnown
	}
	put(t, s.jtis, jti, exp)
	return nil
}
