package memory

import (
	"context"

	"github.com/wxidp/wxidp/storage"
)

// txKey carries the store so a context holding one Store's transaction means
// nothing to another Store.
type txKey struct{ s *Store }

// tx is guarded by the store mutex, like the maps it undoes.
type tx struct {
	undo []func()
	done bool
}

// record keeps fn to run on Rollback; outside a transaction there is nothing
// to undo.
func (t *tx) record(fn func()) {
	if t != nil {
		t.undo = append(t.undo, fn)
	}
}

// put sets m[k] = v, logging how to restore what was there.
func put[K comparable, V any](t *tx, m map[K]V, k K, v V) {
	old, had := m[k]
	t.record(func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
	m[k] = v
}

// drop deletes m[k], logging how to restore it.
func drop[K comparable, V any](t *tx, m map[K]V, k K) {
	old, had := m[k]
	if !had {
		return
	}
	t.record(func() { m[k] = old })
	delete(m, k)
}

// dropWhere drops, through t, every entry of m whose value matches.
func dropWhere[K comparable, V any](t *tx, m map[K]V, match func(V) bool) {
	for k, v := range m {
		if match(v) {
			drop(t, m, k)
		}
	}
}

// BeginTX returns a context whose writes Rollback can undo.
func (s *Store) BeginTX(ctx context.Context) (context.Context, error) {
	if ctx.Value(txKey{s}) != nil {
		return ctx, storage.ErrTxActive
	}
	return context.WithValue(ctx, txKey{s}, &tx{}), nil
}

// Commit keeps the transaction's writes, which are already in place.
func (s *Store) Commit(ctx context.Context) error {
	t, err := s.end(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	t.undo = nil
	return nil
}

// Rollback undoes the transaction's writes, newest first, so a key written
// twice ends with the value it had before the transaction.
func (s *Store) Rollback(ctx context.Context) error {
	t, err := s.end(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
	t.undo = nil
	return nil
}

// end locks the store and marks ctx's transaction finished.
func (s *Store) end(ctx context.Context) (*tx, error) {
	if ctx.Value(txKey{s}) == nil {
		return nil, storage.ErrNoTx
	}
	t, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	t.done = true
	return t, nil
}
