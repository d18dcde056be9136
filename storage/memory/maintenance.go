package memory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// lease is a named lease: holder has it until `until`, exclusive.
type lease struct {
	holder string
	until  time.Time
}

// Table names key storage.PurgeStats as they do in the PostgreSQL backend,
// so a janitor's logs and metrics read the same on both.
const (
	accessTable  = "oauth2_access_tokens"
	refreshTable = "oauth2_refresh_tokens"
	codeTable    = "oauth2_authorization_codes"
	pkceTable    = "oauth2_pkce_requests"
	oidcTable    = "oauth2_oidc_sessions"
	jtiTable     = "client_assertion_jtis"
	wxCodeTable  = "wechat_codes"
)

// oldest returns the keys of at most n entries of m that match, oldest first
// by the time match returns, as the PostgreSQL backend's index walk picks
// them.
func oldest[K comparable, V any](m map[K]V, n int, match func(V) (time.Time, bool)) []K {
	type candidate struct {
		key K
		at  time.Time
	}
	var found []candidate
	for k, v := range m {
		if at, ok := match(v); ok {
			found = append(found, candidate{k, at})
		}
	}
	slices.SortFunc(found, func(a, b candidate) int { return a.at.Compare(b.at) })
	keys := make([]K, 0, min(n, len(found)))
	for _, c := range found[:min(n, len(found))] {
		keys = append(keys, c.key)
	}
	return keys
}

// expiredBy matches an expiry set and before cutoff; a zero expiry (the
// session set none, NULL in PostgreSQL) never matches.
func expiredBy(exp, cutoff time.Time) bool { return !exp.IsZero() && exp.Before(cutoff) }

// PurgeExpired deletes, per table, at most batch rows that expired before
// expiredBefore, and refresh tokens deactivated before inactiveBefore, under
// the transaction in ctx if any. Like the PostgreSQL backend it picks expired
// refresh tokens first and fills the rest of the batch with inactive ones.
func (s *Store) PurgeExpired(ctx context.Context, expiredBefore, inactiveBefore time.Time, batch int) (storage.PurgeStats, error) {
	if batch < 1 {
		return nil, fmt.Errorf("memory: purge: batch must be at least 1, got %d", batch)
	}
	t, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	expiredRow := func(r row) (time.Time, bool) { return r.rec.ExpiresAt, expiredBy(r.rec.ExpiresAt, expiredBefore) }
	stats := storage.PurgeStats{}
	for _, p := range []struct {
		table string
		k     kind
	}{{accessTable, accessKind}, {codeTable, codeKind}, {pkceTable, pkceKind}, {oidcTable, oidcKind}} {
		stats[p.table] = dropAll(t, s.rows[p.k], oldest(s.rows[p.k], batch, expiredRow))
	}
	rts := s.rows[refreshKind]
	keys := oldest(rts, batch, expiredRow)
	keys = append(keys, oldest(rts, batch-len(keys), func(r row) (time.Time, bool) {
		return r.deactivatedAt, !r.active && expiredBy(r.deactivatedAt, inactiveBefore) &&
			!expiredBy(r.rec.ExpiresAt, expiredBefore)
	})...)
	stats[refreshTable] = dropAll(t, rts, keys)
	expiredAt := func(exp time.Time) (time.Time, bool) { return exp, expiredBy(exp, expiredBefore) }
	stats[jtiTable] = dropAll(t, s.jtis, oldest(s.jtis, batch, expiredAt))
	stats[wxCodeTable] = dropAll(t, s.codes, oldest(s.codes, batch, expiredAt))
	stats[ticketTable] = dropAll(t, s.tickets, oldest(s.tickets, batch, func(lt storage.LoginTicket) (time.Time, bool) {
		return expiredAt(lt.ExpiresAt)
	}))
	stats[sessionTable] = dropAll(t, s.sessions, oldest(s.sessions, batch, func(bs storage.BrowserSession) (time.Time, bool) {
		return expiredAt(bs.ExpiresAt)
	}))
	return stats, nil
}

// dropAll deletes keys from m (undoably) and returns how many it deleted.
func dropAll[K comparable, V any](t *tx, m map[K]V, keys []K) int {
	for _, k := range keys {
		drop(t, m, k)
	}
	return len(keys)
}

// TryLease takes the named lease for holder until `until` if it is free,
// has run out by now, or is holder's already; it reports whether holder has
// it now. The store mutex makes the check and the take one step.
func (s *Store) TryLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	t, err := s.lock(ctx)
	if err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	if l, ok := s.leases[name]; ok && l.holder != holder && l.until.After(now) {
		return false, nil
	}
	put(t, s.leases, name, lease{holder: holder, until: until})
	return true, nil
}

// ReleaseLease gives up the named lease if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if l, ok := s.leases[name]; ok && l.holder == holder {
		drop(t, s.leases, name)
	}
	return nil
}
