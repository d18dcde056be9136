package postgres

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"
)

// PurgeStatements exposes the janitor's statements, by table, so the
// external tests can check their plans.
func PurgeStatements() map[string]string {
	m := make(map[string]string, len(purgeStatements))
	for _, p := range purgeStatements {
		m[p.table] = p.sql
	}
	return m
}

// ResealPageStatements exposes, by table, the statement reading a page of
// sealed values after a key, and how many key parameters it takes.
func ResealPageStatements() map[string]struct {
	SQL  string
	NKey int
} {
	m := map[string]struct {
		SQL  string
		NKey int
	}{}
	for _, c := range sealedColumns {
		m[c.table] = struct {
			SQL  string
			NKey int
		}{c.after, c.nKey}
	}
	return m
}

// HeaderStatements exposes, by table, the statement listing the distinct
// headers of its sealed column.
func HeaderStatements() map[string]string {
	m := map[string]string{}
	for _, c := range sealedColumns {
		m[c.table] = c.headers
	}
	return m
}

// ClientCacheListening reports whether s's client cache listener is
// LISTENing, which is when the cache is used.
func ClientCacheListening(s *Store) bool {
	s.clients.mu.RLock()
	defer s.clients.mu.RUnlock()
	return s.clients.live
}

// ClientCached reports whether s's client cache holds id.
func ClientCached(s *Store, id string) bool {
	s.clients.mu.RLock()
	defer s.clients.mu.RUnlock()
	_, ok := s.clients.byID[id]
	return ok
}

// SetClientListenerGate makes s's client cache listener call gate, and wait
// for it, before each connection attempt. Set it before s's first lookup.
func SetClientListenerGate(s *Store, gate func(context.Context) error) {
	s.clients.beforeConnect = gate
}

// ClientListenerDone returns a channel closed when s's client cache
// listener has stopped, nil if it never started.
func ClientListenerDone(s *Store) <-chan struct{} {
	s.clients.run.Lock()
	defer s.clients.run.Unlock()
	return s.clients.done
}

// FakeClientListenerPID makes s's client cache listener see pid as the
// backend process id of its connections' handshakes, as behind a pooler.
// Set it before s's first lookup.
func FakeClientListenerPID(s *Store, pid uint32) {
	s.clients.handshakePID = func(*pgconn.PgConn) uint32 { return pid }
}

// LookupAccessTokenBatched reads key through the access-token batch,
// bypassing the check that keeps keys no row can have out of it, so tests
// can make a batch's statement fail for one caller's key.
func LookupAccessTokenBatched(ctx context.Context, s *Store, key string) error {
	_, err := s.accessReader.get(ctx, key)
	return err
}

// ExchangesUndone is how many code exchanges s's settling has undone.
func ExchangesUndone(s *Store) int64 { return s.exchangesUndone.Load() }

// UndoExchange undoes the exchange of the code signature that created the
// access and refresh tokens, as settling does once the backend is gone.
func UndoExchange(ctx context.Context, s *Store, signature string, access, refresh []string) error {
	return s.undoExchange(ctx, signature, txCreated{access: access, refresh: refresh})
}
