package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wxidp/wxidp/storage"
)

// txKey is unexported so only this package can put a transaction in a
// context or take one out.
type txKey struct{}

// querier is what pgx.Tx and *pgxpool.Pool have in common: methods call it
// without caring which they got.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// txState is what BeginTX puts in the context.
type txState struct {
	tx *pipeTx
	// commitFailed lets the Rollback fosite sends after a failed Commit
	// succeed (see Rollback).
	commitFailed bool
	// clients written in the transaction, invalidated in the client cache
	// again at Commit (clientsWritten).
	clients []string
	// refresh rotations and the tokens created with them, settled if the
	// COMMIT's outcome is unknown (unsettled.go).
	rotations                     []rotation
	refreshCreated, accessCreated []string
	// codes invalidated (exchanged) in the transaction, settled alike.
	codes []string
}

func txFrom(ctx context.Context) (*txState, bool) {
	st, ok := ctx.Value(txKey{}).(*txState)
	return st, ok
}

// db is where a method runs its queries: the context's transaction, so
// Rollback undoes the method, or the pool. Either way each call gets the
// store's deadline (deadline.go).
func (s *Store) db(ctx context.Context) querier {
	if st, ok := txFrom(ctx); ok {
		return timed{q: st.tx, d: s.timeout}
	}
	return timed{q: s.pool, d: s.timeout}
}

// inTx runs fn atomically: in a savepoint of ctx's transaction, so a
// failure undoes fn's writes but leaves the caller's transaction usable;
// otherwise in a READ COMMITTED
// transaction of its own, stated rather than inherited from the server's
// default_transaction_isolation, because callers rely on its row re-check
// after a lock wait.
// The whole of fn, pool acquisition included, runs under one store deadline.
// fn must run its statements with the context it is given, which carries
// that deadline.
func (s *Store) inTx(ctx context.Context, fn func(context.Context, querier) error) error {
	if knownDown(ctx) {
		return errKnownUnavailable
	}
	bctx, cancel := s.bound(ctx)
	defer cancel()
	if st, ok := txFrom(ctx); ok {
		return noteDown(ctx, savepoint(bctx, st.tx, fn))
	}
	return noteDown(ctx, pgx.BeginTxFunc(bctx, s.pool, txOptions, func(tx pgx.Tx) error { return fn(bctx, tx) }))
}

// savepoint runs fn in a savepoint of tx. SAVEPOINT and RELEASE go in the
// pipeline of fn's first statement and of whatever follows.
func savepoint(ctx context.Context, tx *pipeTx, fn func(context.Context, querier) error) error {
	name := "wxidp_" + strconv.Itoa(tx.depth)
	tx.depth++
	defer func() { tx.depth-- }()
	tx.queue("savepoint", "SAVEPOINT "+name)
	if err := fn(ctx, tx); err != nil {
		if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+name); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	tx.queue("release savepoint", "RELEASE SAVEPOINT "+name)
	return nil
}

// txOptions states the isolation level of every transaction the store
// starts instead of inheriting the server's default_transaction_isolation:
// identity linking and refresh rotation rely on READ COMMITTED's re-check of
// a row after a lock wait, and under REPEATABLE READ they would fail with
// serialization errors or unique violations.
var txOptions = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// BeginTX starts a transaction and returns a context carrying it; every
// method called with that context runs inside it until Commit or Rollback.
// The transaction holds a pooled connection until then, so callers must not
// sign, hash or call out to WeChat between BeginTX and Commit. Each call in
// it has its own deadline; so does the pool acquisition. BEGIN itself goes
// with the first statement (pipetx.go).
func (s *Store) BeginTX(ctx context.Context) (context.Context, error) {
	if _, ok := txFrom(ctx); ok {
		return ctx, storage.ErrTxActive
	}
	if knownDown(ctx) {
		return ctx, errKnownUnavailable
	}
	bctx, cancel := s.bound(ctx)
	defer cancel()
	conn, err := s.pool.Acquire(bctx)
	err = noteDown(ctx, err)
	if err != nil {
		return ctx, recordErr("begin", err)
	}
	return context.WithValue(ctx, txKey{}, &txState{tx: &pipeTx{conn: conn}}), nil
}

// Commit commits the context's transaction. A serialization failure or
// deadlock detected at commit is fosite.ErrSerializationFailure.
func (s *Store) Commit(ctx context.Context) error {
	st, ok := txFrom(ctx)
	if !ok {
		return storage.ErrNoTx
	}
	cctx, cancel := s.bound(ctx)
	defer cancel()
	var pid uint32
	if st.tx.conn != nil {
		pid = st.tx.conn.Conn().PgConn().PID()
	}
	sent := time.Now()
	err := noteDown(ctx, st.tx.commit(cctx))
	s.committed(st)
	if commitOutcomeUnknown(err) {
		created := txCreated{refresh: st.refreshCreated, access: st.accessCreated}
		for _, r := range st.rotations { // one, in fosite's refresh
			s.settleLater(r, created, pid, sent)
		}
		for _, c := range st.codes { // one, in fosite's code exchange
			s.settleExchangeLater(c, created, pid, sent)
		}
	}
	if err != nil {
		// A Commit of an already ended transaction is the caller's mistake,
		// not a failed commit.
		st.commitFailed = st.commitFailed || !errors.Is(err, pgx.ErrTxClosed)
		return recordErr("commit", err)
	}
	return nil
}

// rollbackTimeout bounds a rollback run after the request context is gone.
const rollbackTimeout = 5 * time.Second

// Rollback rolls back the context's transaction. After a failed Commit the
// transaction is already gone and Rollback returns nil: fosite rolls back
// after a failed Commit, and an error there would turn its "retry the
// request" answer to a serialization failure into a server error. After a
// successful Commit or a Rollback, Rollback is an error.
func (s *Store) Rollback(ctx context.Context) error {
	st, ok := txFrom(ctx)
	if !ok {
		return storage.ErrNoTx
	}
	// Rolling back on a cancelled request context would fail and close the
	// connection instead of returning it to the pool.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(rollbackTimeout, s.timeout))
	defer cancel()
	err := st.tx.rollback(rctx)
	if errors.Is(err, pgx.ErrTxClosed) && st.commitFailed {
		return nil
	}
	return recordErr("rollback", err)
}
