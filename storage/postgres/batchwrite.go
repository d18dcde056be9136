package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/storage"
)

// Access tokens issued outside a transaction (client_credentials, the
// hottest path) are written in batches: requests that arrive while a batch
// is being written queue up and go together in the next one, one round
// trip and one commit for all of them (pgx sends a batch as one pipeline,
// run in an implicit transaction). Nothing waits for a batch to fill: an
// idle server writes each token at once, so a batch costs no latency. Each
// caller still returns only once its own row is committed, so a token is
// never handed out before introspection and revocation can find it.

// maxBatch bounds one batch; maxWriters the batches in flight, so a burst
// uses at most that many pooled connections for token writes.
const (
	maxBatch   = 64
	maxWriters = 2
)

type pendingInsert struct {
	args []any
	done chan error // buffered: the writer never waits on a caller
}

type insertBatcher struct {
	s     *Store
	table sessionTable
	queue batchQueue[*pendingInsert]
}

func newInsertBatcher(s *Store, t sessionTable) *insertBatcher {
	return &insertBatcher{s: s, table: t}
}

// insert queues one row and waits until it is committed (or failed). A
// caller that gives up (ctx) leaves its row to be written anyway: a token
// nobody holds, as when an answer is lost after a commit.
func (b *insertBatcher) insert(ctx context.Context, args []any) error {
	p := &pendingInsert{args: args, done: make(chan error, 1)}
	err, ok := submit(ctx, &b.queue, b.run, p, p.done)
	if !ok {
		return ctx.Err()
	}
	return noteDown(ctx, err)
}

// run writes batches until nothing is pending, then ends.
func (b *insertBatcher) run() {
	b.queue.each(func(ctx context.Context, batch []*pendingInsert) {
		if err := b.write(ctx, batch); err != nil {
			b.failPending(err)
		}
	})
}

// failPending answers everything queued with the outage a batch just met:
// the rows behind it would each wait out another deadline in turn.
func (b *insertBatcher) failPending(err error) {
	for _, p := range b.queue.drain() {
		p.done <- err
	}
}

// write writes batch and answers its callers; it returns the error when
// the database was unavailable.
func (b *insertBatcher) write(ctx context.Context, batch []*pendingInsert) error {
	db := timed{q: b.s.pool, d: b.s.timeout}
	if len(batch) == 1 {
		_, err := db.Exec(ctx, b.table.insert, batch[0].args...)
		err = fositeErr("create "+b.table.what, err)
		batch[0].done <- err
		return unavailableErr(err)
	}
	q := &pgx.Batch{}
	for _, p := range batch {
		q.Queue(b.table.insert, p.args...)
	}
	err := db.SendBatch(ctx, q).Close()
	if err == nil || unavailable(err) {
		err = fositeErr("create "+b.table.what, err)
		for _, p := range batch {
			p.done <- err
		}
		return unavailableErr(err)
	}
	// One bad row fails the whole implicit transaction: write them one by
	// one, so each caller gets its own row's answer.
	for _, p := range batch {
		_, err := db.Exec(ctx, b.table.insert, p.args...)
		p.done <- fositeErr("create "+b.table.what, err)
	}
	return nil
}

// unavailableErr is err when it is an outage, else nil.
func unavailableErr(err error) error {
	if errors.Is(err, storage.ErrUnavailable) {
		return err
	}
	return nil
}
