package postgres

import (
	"context"
)

// fosite deletes an exchanged code's OpenID Connect session outside its
// transaction, a statement and a commit of its own (a WAL flush the
// exchange waits for). Concurrent exchanges' deletes go in one statement and
// one commit instead, as access-token inserts do (batchwrite.go); each
// caller returns once the statement that deleted its row committed. (Its
// PKCE request fosite deletes too, but the provider keeps it, to tell a
// replayed code: provider/refresh_reuse.go.)

type pendingDelete struct {
	key  string
	done chan error // buffered: the deleter never waits on a caller
}

type deleteBatcher struct {
	s     *Store
	table sessionTable
	queue batchQueue[*pendingDelete]
}

func newDeleteBatcher(s *Store, t sessionTable) *deleteBatcher {
	return &deleteBatcher{s: s, table: t}
}

// remove deletes the row under key (an unknown key is no error) and waits
// until that is committed. A caller that gives up (ctx) leaves its row to
// be deleted anyway.
func (b *deleteBatcher) remove(ctx context.Context, key string) error {
	if knownDown(ctx) {
		return errKnownUnavailable
	}
	p := &pendingDelete{key: key, done: make(chan error, 1)}
	err, ok := submit(ctx, &b.queue, b.run, p, p.done)
	if !ok {
		err = fositeErr("delete "+b.table.what, ctx.Err())
	}
	return noteDown(ctx, err)
}

// run deletes batches until nothing is pending, then ends; a batch whose
// statement failed for anything but an outage is deleted again key by key
// (eachSplit).
func (b *deleteBatcher) run() {
	b.queue.eachSplit(func(ctx context.Context, batch []*pendingDelete) (func(), error) {
		err := b.delete(ctx, batch)
		return func() {
			for _, p := range batch {
				p.done <- err
			}
		}, err
	}, func(p *pendingDelete, err error) { p.done <- err })
}

// delete deletes batch's rows with one statement.
func (b *deleteBatcher) delete(ctx context.Context, batch []*pendingDelete) error {
	keys := make([]string, len(batch))
	for i, p := range batch {
		keys[i] = p.key
	}
	_, err := timed{q: b.s.pool, d: b.s.timeout}.Exec(ctx, b.table.deleteMany, keys)
	return fositeErr("delete "+b.table.what, err)
}
