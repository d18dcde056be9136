package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wxidp/wxidp/storage"
)

// A COMMIT that meets an outage (its deadline passes, the connection
// breaks) has an unknown outcome: the server may have it in its socket
// buffer and commit it after we gave up, as happens when a hung database
// is resumed. The caller answered 503, so the client keeps what it had.
// For most transactions that is harmless (an orphan login or token nobody
// holds), but not for a refresh rotation: the client retries the refresh
// token it still holds, finds it rotated, and reuse detection ends its
// login, because a database outage crossed a COMMIT.
//
// So a rotation whose COMMIT has an unknown outcome is settled afterwards:
// once the database answers again, the backend that had the COMMIT is
// terminated (after that the outcome can no longer change), and if the
// transaction did commit, the rotation is undone: the new refresh and access
// tokens, which no answer handed out, are deleted and the presented token is
// active again (or has its grace back), exactly as the 503 said. A
// revocation that came in between wins: a revoked chain is left revoked.
// Until a rotation is settled, this process answers a refresh with its
// token as unavailable (503), never as reuse. Another process sharing the
// database could still see the rotation before it is undone; a grace period
// (WXIDP_REFRESH_GRACE) covers that too.
//
// An authorization code exchange is settled the same way (fastcode.go): a
// retry of a code the uncertain COMMIT used would be a replay.

// rotation is one refresh-token rotation made in a transaction, with the
// tokens the same transaction created: what undoing it needs.
type rotation struct {
	presented, requestID string
	// at is the deactivation time the rotation set ($3): a token rotated
	// then was rotated by it, one deactivated before and now without grace
	// spent its grace. Undoing needs no answer from the statement, which a
	// rotation made in one statement with its tokens may never have read.
	at time.Time
}

// unsettled tracks rotations whose COMMIT had an unknown outcome.
type unsettled struct {
	ctx    context.Context // ends at Store.Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool           // under mu: no settler starts once close began
	tokens map[string]int // presented refresh signatures and codes (unsettledCode) being settled
}

func newUnsettled() *unsettled {
	ctx, cancel := context.WithCancel(context.Background())
	return &unsettled{ctx: ctx, cancel: cancel, tokens: map[string]int{}}
}

func (u *unsettled) has(signature string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.tokens[signature] > 0
}

func (u *unsettled) mark(key string, delta int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.tokens[key] += delta; u.tokens[key] <= 0 {
		delete(u.tokens, key)
	}
}

// close stops settling (Store.Close) and waits for the settlers. A
// rotation handed over from now on is left as it is: the store is closing.
func (u *unsettled) close() {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	u.cancel()
	u.wg.Wait()
}

var errUnsettled = fmt.Errorf("%w: an earlier refresh with this token met a database outage and is being settled", storage.ErrUnavailable)

// commitOutcomeUnknown reports whether a failed COMMIT may have committed:
// the server neither answered it (a PostgreSQL error means it rolled back)
// nor can it have received it (pgconn.SafeToRetry: nothing was sent).
func commitOutcomeUnknown(err error) bool {
	var pgErr *pgconn.PgError
	return err != nil && !errors.As(err, &pgErr) && !pgconn.SafeToRetry(err) &&
		!errors.Is(err, pgx.ErrTxClosed) && !errors.Is(err, pgx.ErrTxCommitRollback) // the server answered those
}

// settleLater settles r, whose transaction created created, in the
// background; pid is the backend that had the COMMIT, sent at sent.
func (s *Store) settleLater(r rotation, created txCreated, pid uint32, sent time.Time) {
	s.unsettled.later(r.presented, func(ctx context.Context) error {
		return s.settle(ctx, pid, sent, func(ctx context.Context) error { return s.undo(ctx, r, created) })
	})
}

// later marks key (a presented refresh token's signature, or a code's:
// unsettledCode) unsettled now, and runs fn in the background until it
// succeeds, settleFor passes or the store closes; then key is settled. Once
// the store is closing it does nothing.
func (u *unsettled) later(key string, fn func(context.Context) error) {
	// Add under mu, before close can wait: a WaitGroup must not be added
	// to from zero while Wait runs.
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return
	}
	u.wg.Add(1)
	u.tokens[key]++
	u.mu.Unlock()
	go func() {
		defer u.wg.Done()
		defer u.mark(key, -1)
		backoff := 20 * time.Millisecond
		for giveUp := time.Now().Add(settleFor); ; {
			err := fn(u.ctx)
			if err == nil || u.ctx.Err() != nil || time.Now().After(giveUp) {
				return
			}
			select {
			case <-u.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}()
}

type txCreated struct{ refresh, access []string }

// settleFor bounds the settling of one rotation: a database that does not
// come back within it leaves the rotation as it is (the client's retry is
// then reuse), rather than the token answering 503 until a restart.
const settleFor = 15 * time.Minute

// clockSkew widens the window in which the backend with the COMMIT may have
// started: its backend_start is the database's clock, sent ours.
const clockSkew = time.Minute

// settle waits out the backend that had the COMMIT, then runs undo, which
// undoes the write if it committed.
func (s *Store) settle(ctx context.Context, pid uint32, sent time.Time, undo func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// backend_start rules out a later backend given the same pid (allowing
	// for skew between the clocks). Behind a pooler (PgBouncer) the pid is
	// the pooler's choice: run wxidp on direct connections for this to hold.
	var gone bool
	err := s.pool.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start <= $2)
		OR pg_terminate_backend($1, 1000)`, int32(pid), sent.Add(clockSkew)).Scan(&gone)
	if err != nil {
		return err
	}
	if !gone {
		return errors.New("the backend that had the COMMIT is still running")
	}
	return undo(ctx)
}

// undoRotation makes the presented token ($1 of grant $2) what it was
// before a rotation at $3: active again if that rotation rotated it (it
// set the deactivation time), its grace unspent if it spent it (the time
// is an earlier rotation's, whatever the clocks said). A grace spent by
// another caller after this rotation is not given back. SET sees the row
// before the update.
const undoRotation = `UPDATE oauth2_refresh_tokens
	SET active = NOT grace_used, deactivated_at = CASE WHEN grace_used THEN deactivated_at END, grace_used = false
	WHERE signature = $1 AND request_id = $2 AND NOT active
		AND ((NOT grace_used AND deactivated_at = $3) OR (grace_used AND deactivated_at <> $3))`

// undo undoes committed rotation r, whose transaction created created,
// unless its chain was revoked since. It is one rotation at a time: the
// check for a revocation is that the rotation's own new token is active.
func (s *Store) undo(ctx context.Context, r rotation, created txCreated) error {
	return pgx.BeginTxFunc(ctx, s.pool, txOptions, func(tx pgx.Tx) error {
		// Only rows still active: a revocation since then wins.
		tag, err := tx.Exec(ctx, `DELETE FROM oauth2_refresh_tokens WHERE signature = ANY($1) AND active`, created.refresh)
		if err != nil || tag.RowsAffected() == 0 {
			return err // not committed, or revoked since
		}
		if _, err := tx.Exec(ctx, `DELETE FROM oauth2_access_tokens WHERE signature = ANY($1)`, created.access); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, undoRotation, r.presented, r.requestID, r.at)
		return err
	})
}

// undoIfWritten settles a batched write whose caller stopped waiting (its
// request ended) and was answered unavailable: key reads as unsettled until
// the write's answer comes, and undo runs if it wrote after all. An outage
// is the batch's to settle (stmtBatcher.uncommitted): it knows the backend.
func undoIfWritten[R any](s *Store, key string, done <-chan stmtAnswer[R], wrote func(R) bool, undo func(context.Context) error) {
	var (
		a   stmtAnswer[R]
		got bool
	)
	s.unsettled.later(key, func(ctx context.Context) error {
		if !got {
			select {
			case a = <-done:
				got = true
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if a.err != nil || a.failed || !wrote(a.r) {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		return undo(ctx)
	})
}
