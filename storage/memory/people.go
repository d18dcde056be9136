package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// userLockPoll is how often a disable or erasure waiting for transactions
// that read-locked the user looks again: tx.go has no hook that would wake
// it when they end.
const userLockPoll = time.Millisecond

// The memory store's transactions give no isolation (see doc.go), yet
// disabling must exclude a concurrent login or refresh: a transaction that
// rotated a refresh token or linked a login of a user goes on to store the
// new tokens in later calls, and had disabling run in between, they would
// outlive it. So, as PostgreSQL's FOR SHARE does, such a transaction
// read-locks the user until it ends (holdUser), and SetUserDisabled and
// EraseUser wait for every other transaction holding the user
// (lockUserExclusive). Outside a transaction nothing is held beyond the
// call, as in PostgreSQL.

// refuseDisabled returns storage.ErrUserDisabled if id is a disabled user;
// a subject that is no user (client_credentials) is not refused.
func (s *Store) refuseDisabled(op, id string) error {
	if u, ok := s.users[id]; ok && u.Disabled() {
		return fmt.Errorf("memory: %s: user %q: %w", op, id, storage.ErrUserDisabled)
	}
	return nil
}

// holdUser read-locks the user id for t until t ends; nothing outside a
// transaction or for a subject that is no user. Callers hold the mutex.
func (s *Store) holdUser(t *tx, id string) {
	if t == nil {
		return
	}
	if _, ok := s.users[id]; !ok {
		return
	}
	for held := range s.userLocks {
		if held.done {
			delete(s.userLocks, held)
		}
	}
	users := s.userLocks[t]
	if users == nil {
		users = map[string]bool{}
		s.userLocks[t] = users
	}
	users[id] = true
}

// lockUserExclusive takes the mutex once no transaction but ctx's own
// read-locks the user id, and returns ctx's transaction as lock does.
func (s *Store) lockUserExclusive(ctx context.Context, id string) (*tx, error) {
	for {
		t, err := s.lock(ctx)
		if err != nil {
			return nil, err
		}
		held := false
		for other, users := range s.userLocks {
			if other != t && !other.done && users[id] {
				held = true
				break
			}
		}
		if !held {
			return t, nil
		}
		s.mu.Unlock()
		timer := time.NewTimer(userLockPoll)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// newestFirst orders users by (CreatedAt, ID), newest first.
func newestFirst(a, b storage.User) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(b.ID, a.ID)
}

// ListUsers returns copies of at most limit users matching f, newest first
// by (CreatedAt, ID), strictly older than the cursor when one is given.
func (s *Store) ListUsers(ctx context.Context, f storage.UserFilter, after *storage.UserCursor, limit int) ([]storage.User, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := []storage.User{}
	if limit <= 0 {
		return out, nil
	}
	// A timestamptz parameter keeps microseconds: compare as PostgreSQL does.
	createdAfter, createdBefore := usec(f.CreatedAfter), usec(f.CreatedBefore)
	var cursor *storage.User
	if after != nil {
		cursor = &storage.User{ID: after.ID, CreatedAt: usec(after.CreatedAt)}
	}
	// A client without appid matches through its tokens only.
	clientApp := ""
	if f.ClientID != "" {
		clientApp = s.clients[f.ClientID].WeChatAppID
	}
	// Which users match each identity filter, found in one pass.
	var byOpenID, byUnionID, byClientApp map[string]bool
	if f.OpenID != "" || f.AppID != "" {
		byOpenID = map[string]bool{}
	}
	if f.UnionID != "" {
		byUnionID = map[string]bool{}
	}
	if f.ClientID != "" {
		byClientApp = map[string]bool{}
	}
	for k, id := range s.identities {
		if byOpenID != nil && (f.OpenID == "" || k.openID == f.OpenID) && (f.AppID == "" || k.appID == f.AppID) {
			byOpenID[id.UserID] = true
		}
		if byUnionID != nil && id.UnionID == f.UnionID {
			byUnionID[id.UserID] = true
		}
		if byClientApp != nil && clientApp != "" && k.appID == clientApp {
			byClientApp[id.UserID] = true
		}
	}
	if byClientApp != nil {
		for _, k := range []kind{accessKind, refreshKind} {
			for _, r := range s.rows[k] {
				if r.rec.ClientID == f.ClientID && r.rec.Subject != "" {
					byClientApp[r.rec.Subject] = true
				}
			}
		}
	}
	for _, u := range s.users {
		switch {
		case byOpenID != nil && !byOpenID[u.ID],
			byUnionID != nil && !byUnionID[u.ID],
			byClientApp != nil && !byClientApp[u.ID],
			f.Phone != "" && u.PhoneNumber != f.Phone,
			!f.CreatedAfter.IsZero() && u.CreatedAt.Before(createdAfter),
			!f.CreatedBefore.IsZero() && !u.CreatedAt.Before(createdBefore),
			cursor != nil && newestFirst(u, *cursor) <= 0:
			continue
		}
		out = append(out, u)
	}
	slices.SortFunc(out, newestFirst)
	if len(out) > limit {
		out = out[:limit:limit]
	}
	return out, nil
}

// UserDetails returns a copy of the user with their identities (no session
// keys), last login and live refresh-token chains.
func (s *Store) UserDetails(ctx context.Context, id string) (*storage.UserDetails, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return nil, fmt.Errorf("memory: user %q: %w", id, storage.ErrNotFound)
	}
	d := &storage.UserDetails{User: u, Identities: []storage.WeChatIdentity{}, Chains: []storage.TokenChain{}}
	for _, wi := range s.identities {
		if wi.UserID != id {
			continue
		}
		wi.SessionKey = nil
		d.Identities = append(d.Identities, wi)
		if wi.UpdatedAt.After(d.LastLoginAt) {
			d.LastLoginAt = wi.UpdatedAt
		}
	}
	slices.SortFunc(d.Identities, func(a, b storage.WeChatIdentity) int {
		return cmp.Or(strings.Compare(a.AppID, b.AppID), strings.Compare(a.OpenID, b.OpenID))
	})
	for _, bs := range s.sessions {
		if bs.UserID == id && bs.AuthTime.After(d.LastLoginAt) {
			d.LastLoginAt = bs.AuthTime
		}
	}
	// A chain is live while one of its refresh tokens is active and
	// unexpired; its newest such token says when it was issued.
	stamp := now()
	chains := map[string]storage.TokenChain{}
	for _, r := range s.rows[refreshKind] {
		if !r.active || r.rec.Subject != id || (!r.rec.ExpiresAt.IsZero() && !r.rec.ExpiresAt.After(stamp)) {
			continue
		}
		c, seen := chains[r.rec.RequestID]
		if seen && (r.rec.RequestedAt.Before(c.IssuedAt) ||
			r.rec.RequestedAt.Equal(c.IssuedAt) && !r.rec.ExpiresAt.After(c.ExpiresAt)) {
			continue
		}
		chains[r.rec.RequestID] = storage.TokenChain{
			RequestID: r.rec.RequestID, ClientID: r.rec.ClientID, Scopes: slices.Clone(r.rec.GrantedScopes),
			IssuedAt: r.rec.RequestedAt, ExpiresAt: r.rec.ExpiresAt,
		}
	}
	for _, c := range chains {
		d.Chains = append(d.Chains, c)
	}
	slices.SortFunc(d.Chains, func(a, b storage.TokenChain) int {
		return cmp.Or(b.IssuedAt.Compare(a.IssuedAt), strings.Compare(a.RequestID, b.RequestID))
	})
	return d, nil
}

// SetUserDisabled disables or enables the user and returns a copy as
// stored. Disabling waits for transactions that read-locked the user (a
// refresh or login storing its tokens) and deletes everything that would
// let the user in: tokens, codes, PKCE and OpenID Connect sessions, login
// tickets and browser sessions.
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool) (*storage.User, error) {
	var (
		t   *tx
		err error
	)
	if disabled {
		t, err = s.lockUserExclusive(ctx, id)
	} else {
		t, err = s.lock(ctx)
	}
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return nil, fmt.Errorf("memory: user %q: %w", id, storage.ErrNotFound)
	}
	stamp := now()
	u.UpdatedAt = stamp
	switch {
	case !disabled:
		u.DisabledAt = time.Time{}
	case !u.Disabled():
		u.DisabledAt = stamp
	}
	put(t, s.users, id, u)
	if disabled {
		s.dropUserGrants(t, id)
	}
	return &u, nil
}

// dropUserGrants deletes every request row whose subject is the user, and
// the user's login tickets and browser sessions.
func (s *Store) dropUserGrants(t *tx, id string) {
	for _, m := range s.rows {
		dropWhere(t, m, func(r row) bool { return r.rec.Subject == id })
	}
	dropWhere(t, s.tickets, func(lt storage.LoginTicket) bool { return lt.UserID == id })
	dropWhere(t, s.sessions, func(bs storage.BrowserSession) bool { return bs.UserID == id })
}

// SetUserProfile applies p (a nil field keeps its value) and returns a copy
// of the user as stored.
func (s *Store) SetUserProfile(ctx context.Context, id string, p storage.ProfilePatch) (*storage.User, error) {
	t, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return nil, fmt.Errorf("memory: user %q: %w", id, storage.ErrNotFound)
	}
	if p.Nickname != nil {
		u.Nickname = *p.Nickname
	}
	if p.Picture != nil {
		u.Picture = *p.Picture
	}
	stamp := now()
	u.ProfileUpdatedAt, u.UpdatedAt = stamp, stamp
	put(t, s.users, id, u)
	return &u, nil
}

// EraseUser deletes the user and everything naming them: identities, the
// unionids they hold, request rows, login tickets and browser sessions.
// Like disabling, it waits for transactions that read-locked the user.
func (s *Store) EraseUser(ctx context.Context, id string) error {
	t, err := s.lockUserExclusive(ctx, id)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.users[id]; !ok {
		return fmt.Errorf("memory: user %q: %w", id, storage.ErrNotFound)
	}
	drop(t, s.users, id)
	dropWhere(t, s.identities, func(wi storage.WeChatIdentity) bool { return wi.UserID == id })
	dropWhere(t, s.unions, func(holder string) bool { return holder == id })
	s.dropUserGrants(t, id)
	return nil
}
