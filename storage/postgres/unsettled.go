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

// rotation is one refresh-token rotation made in a transaction, with the
// tokens the same transaction created: what undoing it needs.
type rotation struct {
	presented, requestID string
	graceUse             bool // it spent the grace of an already rotated token
}

// unsettled tracks rotations whose COMMIT had an unknown outcome.
type unsettled struct {
	ctx    context.Context // ends at Store.Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	tokens map[string]int // presented refresh signatures being settled
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

func (u *unsettled) mark(rs []rotation, delta int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, r := range rs {
		if u.tokens[r.presented] += delta; u.tokens[r.presented] <= 0 {
			delete(u.tokens, r.presented)
		}
	}
}

// close stops settling (Store.Close) and waits for the settlers.
func (u *unsettled) close() {
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

// settleLater settles st's rotations in the background; pid is the backend
// that had the COMMIT, sent at sent.
func (s *Store) settleLater(st *txState, pid uint32, sent time.Time) {
	u := s.unsettled
	rs := st.rotations
	created := txCreated{refresh: st.refreshCreated, access: st.accessCreated}
	u.mark(rs, 1)
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer u.mark(rs, -1)
		backoff := 20 * time.Millisecond
		for giveUp := time.Now().Add(settleFor); ; {
			err := s.settle(u.ctx, pid, sent, rs, created)
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

// settle waits out the backend that had the COMMIT, then undoes the
// rotations if it committed them.
func (s *Store) settle(ctx context.Context, pid uint32, sent time.Time, rs []rotation, created txCreated) error {
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
	return pgx.BeginTxFunc(ctx, s.pool, txOptions, func(tx pgx.Tx) error {
		// Only rows still active: a revocation since then wins.
		tag, err := tx.Exec(ctx, `DELETE FROM oauth2_refresh_tokens WHERE signature = ANY($1) AND active`, created.refresh)
		if err != nil || tag.RowsAffected() == 0 {
			return err // not committed, or revoked since
		}
		if _, err := tx.Exec(ctx, `DELETE FROM oauth2_access_tokens WHERE signature = ANY($1)`, created.access); err != nil {
			return err
		}
		for _, r := range rs {
			q := `UPDATE oauth2_refresh_tokens SET active = true, deactivated_at = NULL, grace_used = false
				WHERE signature = $1 AND request_id = $2 AND NOT active AND grace_used = false`
			if r.graceUse {
				q = `UPDATE oauth2_refresh_tokens SET grace_used = false
					WHERE signature = $1 AND request_id = $2 AND NOT active AND grace_used`
			}
			if _, err := tx.Exec(ctx, q, r.presented, r.requestID); err != nil {
				return err
			}
		}
		return nil
	})
}
