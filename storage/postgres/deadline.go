package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wxidp/wxidp/storage"
)

// DefaultTimeout bounds every database call when WithTimeout is not given.
const DefaultTimeout = 5 * time.Second

// WithTimeout sets the deadline of every database call the store makes,
// waiting for a pooled connection included. A database that stops answering
// (a hung server, a half-open connection, a network partition) then costs
// each caller at most about d before it gets storage.ErrUnavailable,
// instead of holding its request, and its connection, forever. d <= 0 keeps
// the default.
func WithTimeout(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.timeout = d
		}
	}
}

// bound derives the context of one database call. A caller's earlier
// deadline still wins.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// errKnownUnavailable answers, at once, a call made in a storage.FailFast
// context after an earlier call found the database unavailable.
var errKnownUnavailable = fmt.Errorf("%w: an earlier call of this request found the database unavailable", storage.ErrUnavailable)

// knownDown reports whether ctx already met an outage (storage.FailFast).
func knownDown(ctx context.Context) bool { return storage.KnownUnavailable(ctx) }

// noteDown records an outage in ctx for the calls after this one, and
// returns err.
func noteDown(ctx context.Context, err error) error {
	if err != nil && unavailable(err) {
		storage.MarkUnavailable(ctx)
	}
	return err
}

// timed gives each call on q its own deadline. A query's deadline must
// outlive the call that starts it, until its rows are read: QueryRow's ends
// after Scan, Query's and SendBatch's at Close.
type timed struct {
	q querier
	d time.Duration
}

func (t timed) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if knownDown(ctx) {
		return pgconn.CommandTag{}, errKnownUnavailable
	}
	cctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	tag, err := t.q.Exec(cctx, sql, args...)
	return tag, noteDown(ctx, err)
}

func (t timed) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if knownDown(ctx) {
		return nil, errKnownUnavailable
	}
	cctx, cancel := context.WithTimeout(ctx, t.d)
	rows, err := t.q.Query(cctx, sql, args...)
	if err != nil {
		cancel()
		return nil, noteDown(ctx, err)
	}
	return timedRows{Rows: rows, cancel: cancel}, nil
}

func (t timed) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if knownDown(ctx) {
		return failedRow{}
	}
	cctx, cancel := context.WithTimeout(ctx, t.d)
	return timedRow{row: t.q.QueryRow(cctx, sql, args...), cancel: cancel, ctx: ctx}
}

func (t timed) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	cctx, cancel := context.WithTimeout(ctx, t.d)
	return timedBatch{BatchResults: t.q.SendBatch(cctx, b), cancel: cancel}
}

type timedRows struct {
	pgx.Rows
	cancel context.CancelFunc
}

func (r timedRows) Close() {
	r.Rows.Close()
	r.cancel()
}

// Next closes the rows when they are exhausted, as pgx does, so a caller
// that reads to the end without calling Close still releases the deadline.
func (r timedRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.cancel()
	return false
}

type timedRow struct {
	row    pgx.Row
	cancel context.CancelFunc
	ctx    context.Context // the caller's, to note an outage in
}

func (r timedRow) Scan(dest ...any) error {
	defer r.cancel()
	return noteDown(r.ctx, r.row.Scan(dest...))
}

type failedRow struct{}

func (failedRow) Scan(...any) error { return errKnownUnavailable }

type timedBatch struct {
	pgx.BatchResults
	cancel context.CancelFunc
}

func (b timedBatch) Close() error {
	defer b.cancel()
	return b.BatchResults.Close()
}

// lockBoundedBatch starts a pipeline of batched writes (fastlogin.go,
// fastrefresh.go) whose statements wait for a row lock at most half the
// store's deadline d. A lock held that long (a revocation or an erasure of
// many tokens, another process stuck mid-commit) then fails only the
// statement that waited, with lock_not_available, which the batch answers
// as "not written" for the transactional path to decide; otherwise the
// deadline would end the whole pipeline and answer every caller in it as
// an outage. The setting is local to the pipeline's implicit transaction;
// the caller reads its result first (skipLockBound).
func lockBoundedBatch(d time.Duration) *pgx.Batch {
	q := &pgx.Batch{}
	q.Queue(`SELECT set_config('lock_timeout', $1, true)`, strconv.FormatInt(max(d/2, time.Millisecond).Milliseconds(), 10)+"ms")
	return q
}

// skipLockBound reads the result of lockBoundedBatch's first statement.
func skipLockBound(br pgx.BatchResults) error {
	_, err := br.Exec()
	return err
}
