package postgres

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// A returning login (fastlogin.go), a refresh rotation (fastrefresh.go) and
// an authorization code exchange (fastcode.go) each write in one statement
// that needs no transaction of its own. stmtBatcher runs the statements of
// concurrent requests in one pipeline: one implicit transaction, one
// round trip, one commit. Batches lock rows in one order (order), so two
// cannot deadlock; a statement that fails for anything but an outage fails
// the whole pipeline, so the batch is then written call by call and each
// caller gets its own answer: "failed" (nothing written: the caller takes
// its transactional path) or its result.

// stmtCall is one caller's statement; R is what its row scans into.
type stmtCall[R any] struct {
	sql  string
	args []any
	done chan stmtAnswer[R] // buffered: the writer never waits on a caller
}

func (c *stmtCall[R]) call() *stmtCall[R] { return c }

func newStmtCall[R any](sql string, args []any) stmtCall[R] {
	return stmtCall[R]{sql: sql, args: args, done: make(chan stmtAnswer[R], 1)}
}

// stmtAnswer is a statement's outcome: its row, or failed (nothing
// written, not an outage), or err (an outage).
type stmtAnswer[R any] struct {
	r      R
	failed bool
	err    error
}

// stmtBatcher batches calls of type P, which carry a stmtCall[R].
type stmtBatcher[R any, P interface{ call() *stmtCall[R] }] struct {
	s     *Store
	what  string // the operation, in errors
	queue batchQueue[P]
	order func(x, y P) int              // the order a batch locks its rows in
	scan  func(row pgx.Row, r *R) error // reads one statement's row
	// uncommitted, if set, is told of a batch whose COMMIT's outcome is
	// unknown (it met an outage), with the backend and when it was sent.
	uncommitted func(batch []P, pid uint32, sent time.Time)
}

// submit queues p and waits for its answer; ok is false if ctx ended first
// (the statement may still commit).
func (b *stmtBatcher[R, P]) submit(ctx context.Context, p P) (stmtAnswer[R], bool) {
	return submit(ctx, &b.queue, b.run, p, p.call().done)
}

// run writes batches until nothing is pending, then ends; a batch whose
// pipeline failed for anything but an outage is written again call by call
// (eachSplit).
func (b *stmtBatcher[R, P]) run() {
	b.queue.eachSplit(b.write, func(p P, err error) { p.call().done <- stmtAnswer[R]{err: err} })
}

// write sends batch, sorted into its lock order, and returns how to answer
// its callers and the error it met: a statement that failed for anything
// but an outage is "failed" to its caller (nothing was written).
func (b *stmtBatcher[R, P]) write(ctx context.Context, batch []P) (func(), error) {
	slices.SortStableFunc(batch, b.order)
	results, err := b.send(ctx, batch)
	if err != nil && !unavailable(err) {
		return func() {
			for _, p := range batch {
				p.call().done <- stmtAnswer[R]{failed: true}
			}
		}, err
	}
	err = recordErr(b.what, err)
	return func() {
		for i, p := range batch {
			if err != nil {
				p.call().done <- stmtAnswer[R]{err: err}
				continue
			}
			p.call().done <- stmtAnswer[R]{r: results[i]}
		}
	}, err
}

// send runs batch's statements in one pipeline on one connection, their
// row-lock waits bounded (lockBoundedBatch).
func (b *stmtBatcher[R, P]) send(ctx context.Context, batch []P) ([]R, error) {
	ctx, cancel := context.WithTimeout(ctx, b.s.timeout)
	defer cancel()
	conn, err := b.s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	q := lockBoundedBatch(b.s.timeout)
	for _, p := range batch {
		c := p.call()
		q.Queue(c.sql, c.args...)
	}
	pid, sent := conn.Conn().PgConn().PID(), time.Now()
	br := conn.SendBatch(ctx, q)
	results := make([]R, len(batch))
	err = skipLockBound(br)
	for i := 0; i < len(batch) && err == nil; i++ {
		err = b.scan(br.QueryRow(), &results[i])
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if b.uncommitted != nil && unavailable(err) && commitOutcomeUnknown(err) {
		b.uncommitted(batch, pid, sent)
	}
	return results, err
}

// tokenInserts are the CTEs a one-statement write ends with: the access
// token's insert (its record columns from $first) and, withRefresh, the
// refresh token's (its record columns and access_token_signature next),
// each only if CTE written returned a row.
func tokenInserts(first int, withRefresh bool, written string) string {
	q := `, a AS (
		INSERT INTO oauth2_access_tokens (` + recordColumns + `) SELECT ` + placeholders(first, 12) + `
		WHERE EXISTS (SELECT 1 FROM ` + written + `)
	)`
	if withRefresh {
		q += `, r AS (
		INSERT INTO oauth2_refresh_tokens (` + recordColumns + `, access_token_signature) SELECT ` + placeholders(first+12, 13) + `
		WHERE EXISTS (SELECT 1 FROM ` + written + `)
	)`
	}
	return q
}
