package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pipeTx is a transaction with as few round trips as its statements allow.
// A grant's transaction is short and mostly writes (a WeChat login: BEGIN,
// link the identity, insert the access and refresh tokens, COMMIT; a
// refresh: BEGIN, rotate, two inserts, COMMIT), and on a loaded server each
// round trip costs a write, a wake-up of the backend and one of ours, more
// than the statement itself. So BEGIN is sent in one pipeline with the first
// statement, and inserts whose outcome nobody reads before the commit
// (queue) wait and go in one pipeline with the next statement or with
// COMMIT: a login or refresh takes two round trips inside its transaction
// instead of five. Errors are not lost, only reported later: a failed
// queued insert fails the statement it was sent with, or the Commit, and the
// transaction rolls back as before. Statements still run in the order they
// were issued, so a read sees the transaction's earlier writes.
type pipeTx struct {
	conn   *pgxpool.Conn // nil once committed or rolled back
	begun  bool          // BEGIN has been sent
	queued []queuedExec
	depth  int // savepoints open (inTx inside a transaction)
}

type queuedExec struct {
	sql  string
	args []any
	op   string // names it in errors
}

// beginSQL states the isolation level (txOptions).
const beginSQL = "BEGIN ISOLATION LEVEL READ COMMITTED"

// queue defers a statement whose result only the commit needs.
func (p *pipeTx) queue(op, sql string, args ...any) {
	p.queued = append(p.queued, queuedExec{sql: sql, args: args, op: op})
}

// pending reports whether statements wait to be sent.
func (p *pipeTx) pending() bool { return !p.begun || len(p.queued) > 0 }

// send starts a batch with BEGIN and the queued statements, then last.
// The caller reads the prefix with readPrefix, then last's result.
func (p *pipeTx) send(ctx context.Context, last string, args ...any) (pgx.BatchResults, prefix) {
	b := &pgx.Batch{}
	pre := prefix{begin: !p.begun, queued: p.queued}
	if pre.begin {
		b.Queue(beginSQL)
	}
	for _, q := range p.queued {
		b.Queue(q.sql, q.args...)
	}
	b.Queue(last, args...)
	p.begun, p.queued = true, nil
	return p.conn.SendBatch(ctx, b), pre
}

// prefix is what send put before the caller's statement.
type prefix struct {
	begin  bool
	queued []queuedExec
}

func (pre prefix) read(br pgx.BatchResults) error {
	if pre.begin {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
	}
	for _, q := range pre.queued {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("%s: %w", q.op, err)
		}
	}
	return nil
}

// flush sends what is pending on its own (before a Query or a batch).
func (p *pipeTx) flush(ctx context.Context) error {
	if !p.pending() {
		return nil
	}
	last := p.queued
	if len(last) == 0 {
		p.begun = true
		_, err := p.conn.Exec(ctx, beginSQL)
		return err
	}
	q := last[len(last)-1]
	p.queued = last[:len(last)-1]
	if _, err := p.Exec(ctx, q.sql, q.args...); err != nil {
		return fmt.Errorf("%s: %w", q.op, err)
	}
	return nil
}

func (p *pipeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if p.conn == nil {
		return pgconn.CommandTag{}, pgx.ErrTxClosed
	}
	if !p.pending() {
		return p.conn.Exec(ctx, sql, args...)
	}
	br, pre := p.send(ctx, sql, args...)
	err := pre.read(br)
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

func (p *pipeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if p.conn == nil {
		return errRow{pgx.ErrTxClosed}
	}
	if !p.pending() {
		return p.conn.QueryRow(ctx, sql, args...)
	}
	br, pre := p.send(ctx, sql, args...)
	if err := pre.read(br); err != nil {
		_ = br.Close()
		return errRow{err}
	}
	return batchRow{row: br.QueryRow(), br: br}
}

// Query and SendBatch are rare inside a grant's transaction: they flush
// first, one round trip more, rather than tie the rows' lifetime to a batch.
func (p *pipeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if p.conn == nil {
		return nil, pgx.ErrTxClosed
	}
	if err := p.flush(ctx); err != nil {
		return nil, err
	}
	return p.conn.Query(ctx, sql, args...)
}

func (p *pipeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if p.conn == nil {
		return errBatch{pgx.ErrTxClosed}
	}
	if err := p.flush(ctx); err != nil {
		return errBatch{err}
	}
	return p.conn.SendBatch(ctx, b)
}

// commit sends what is pending with COMMIT, and releases the connection
// whatever happens (the pool closes one left inside a transaction).
func (p *pipeTx) commit(ctx context.Context) error {
	if p.conn == nil {
		return pgx.ErrTxClosed
	}
	defer p.release()
	if !p.begun && len(p.queued) == 0 {
		return nil // nothing was sent: nothing to commit
	}
	br, pre := p.send(ctx, "COMMIT")
	err := pre.read(br)
	if err == nil {
		var tag pgconn.CommandTag
		if tag, err = br.Exec(); err == nil && tag.String() == "ROLLBACK" {
			err = pgx.ErrTxCommitRollback
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// rollback ends the transaction and releases the connection.
func (p *pipeTx) rollback(ctx context.Context) error {
	if p.conn == nil {
		return pgx.ErrTxClosed
	}
	defer p.release()
	if !p.begun {
		return nil // only queued statements: never sent
	}
	_, err := p.conn.Exec(ctx, "ROLLBACK")
	return err
}

func (p *pipeTx) release() {
	p.conn.Release()
	p.conn, p.queued = nil, nil
}

type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil || (errors.Is(err, pgx.ErrNoRows) && cerr != nil) {
		err = cerr
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }
