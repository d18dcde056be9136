package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// fosite's refresh handler rotates in a transaction of its own: BEGIN with
// the rotating UPDATE, then the two token inserts with COMMIT, two round
// trips and a commit per refresh. RotateAndIssue makes the rotation and the
// inserts one statement (rotateAndIssue: the rotation's CTEs, then inserts
// that run only if it rotated), so it needs no transaction, and statements
// of concurrent refreshes go in one pipeline and one commit, as returning
// logins do (fastlogin.go). The rotation's rules are RotateRefreshToken's,
// by the same SQL.
//
// Two things differ from a transaction the caller holds. A batch's COMMIT
// that meets an outage is settled like the transaction's (unsettled.go),
// each rotation on its own. And a caller that stops waiting (its request
// ended) answers unavailable while its statement may still commit: its
// rotation is then undone as one whose COMMIT crossed an outage, and its
// token reads as unavailable until it is.

// rotateAndIssue: $1–$4 the rotation's (presented signature, request ID,
// now, grace cutoff), then the access token's record columns, then the
// refresh token's and its access_token_signature.
var rotateAndIssue = rotationCTEs + `, a AS (
		INSERT INTO oauth2_access_tokens (` + recordColumns + `) SELECT ` + placeholders(5, 12) + `
		WHERE EXISTS (SELECT 1 FROM rotated)
	), r AS (
		INSERT INTO oauth2_refresh_tokens (` + recordColumns + `, access_token_signature) SELECT ` + placeholders(17, 13) + `
		WHERE EXISTS (SELECT 1 FROM rotated)
	)` + rotationResult

// RotateAndIssue rotates the presented refresh token of requestID as
// RotateRefreshToken does and stores the tokens issue creates (an access
// and a refresh token, their writes deferred) in the same statement, only
// if it rotated. Its answers are RotateRefreshToken's: fosite.ErrNotFound
// for a token that did not rotate, storage.ErrUserDisabled, an unavailable
// database; written is false with no error when the statement failed for
// another reason (a deadlock, say): nothing was written, and the caller
// takes the transactional path. issue's error is returned as it is.
func (s *Store) RotateAndIssue(ctx context.Context, requestID, presented string, issue func(context.Context) error) (written bool, _ error) {
	if _, inTx := txFrom(ctx); inTx {
		return false, errors.New("postgres: rotate and issue inside a transaction")
	}
	d, err := collectWrites(ctx, issue)
	if err != nil {
		return false, err
	}
	if d.access == nil || d.refresh == nil {
		return false, errors.New("postgres: rotate and issue: a refresh issues an access and a refresh token")
	}
	if knownDown(ctx) {
		return false, errKnownUnavailable
	}
	if s.unsettled.has(presented) {
		return false, errUnsettled
	}
	now := s.clockNow()
	p := &pendingRotation{
		rot:     rotation{presented: presented, requestID: requestID, at: now},
		created: txCreated{access: []string{d.access[0].(string)}, refresh: []string{d.refresh[0].(string)}},
		args:    append(append([]any{presented, requestID, now, s.graceCutoff(now)}, d.access...), d.refresh...),
		done:    make(chan rotated, 1),
	}
	r, ok := submit(ctx, &s.rotations.queue, s.rotations.run, p, p.done)
	if !ok {
		s.undoIfWritten(p)
		// Unavailable even when the client went away (context.Canceled):
		// the answer says the token is still the one to present.
		return false, noteDown(ctx, fmt.Errorf("%w: rotate refresh token: %w", storage.ErrUnavailable, ctx.Err()))
	}
	switch {
	case r.err != nil:
		return false, noteDown(ctx, r.err)
	case r.failed:
		return false, nil
	case r.disabled:
		return false, fmt.Errorf("postgres: rotate refresh token: %w", storage.ErrUserDisabled)
	case r.n == 0:
		return false, fosite.ErrNotFound
	}
	return true, nil
}

// collectWrites runs issue with its token writes deferred, and returns them.
func collectWrites(ctx context.Context, issue func(context.Context) error) (*deferredWrites, error) {
	d := &deferredWrites{}
	if err := issue(context.WithValue(ctx, deferredKey{}, d)); err != nil {
		return nil, err
	}
	return d, d.err
}

// undoIfWritten undoes p's rotation if its statement, whose caller stopped
// waiting, rotates after all; its token reads as unavailable until then.
func (s *Store) undoIfWritten(p *pendingRotation) {
	var (
		r   rotated
		got bool
	)
	s.unsettled.later(p.rot, func(ctx context.Context) error {
		if !got {
			select {
			case r = <-p.done:
				got = true
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		// An outage is the batch's to settle: it knows the backend.
		if r.err != nil || r.failed || r.n == 0 {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		return s.undo(ctx, p.rot, p.created)
	})
}

type pendingRotation struct {
	rot     rotation
	created txCreated // the tokens its statement inserts
	args    []any
	done    chan rotated // buffered: the writer never waits on a caller
}

type rotated struct {
	n        int  // rotated: 1 or 0
	disabled bool // the token's user is disabled
	failed   bool // the statement failed, and wrote nothing
	err      error
}

type rotationBatcher struct {
	s     *Store
	queue batchQueue[*pendingRotation]
}

func (b *rotationBatcher) run() {
	b.queue.each(func(ctx context.Context, batch []*pendingRotation) {
		if err := b.write(ctx, batch); err != nil {
			for _, p := range b.queue.drain() { // they would each wait out the outage in turn
				p.done <- rotated{err: err}
			}
		}
	})
}

// write runs batch in one pipeline (one implicit transaction) and answers
// its callers; it returns the error when the database was unavailable.
// Rotations are sorted by presented token, so two batches that share tokens
// lock them in the same order. When a statement fails for anything but an
// outage, they are written one by one, each caller getting its own answer.
func (b *rotationBatcher) write(ctx context.Context, batch []*pendingRotation) error {
	slices.SortStableFunc(batch, func(x, y *pendingRotation) int { return cmp.Compare(x.rot.presented, y.rot.presented) })
	results, err := b.send(ctx, batch)
	if err == nil || unavailable(err) || len(batch) == 1 {
		return answerRotations(batch, results, err)
	}
	for i, p := range batch {
		r, err := b.send(ctx, []*pendingRotation{p})
		if err := answerRotations([]*pendingRotation{p}, r, err); err != nil {
			for _, q := range batch[i+1:] { // an outage: the rest would each wait it out
				q.done <- rotated{err: err}
			}
			return err
		}
	}
	return nil
}

// answerRotations answers batch after send returned results, err, and
// returns the answer's error if it is an outage.
func answerRotations(batch []*pendingRotation, results []rotated, err error) error {
	if err != nil && !unavailable(err) {
		for _, p := range batch {
			p.done <- rotated{failed: true}
		}
		return nil
	}
	err = recordErr("rotate refresh token", err)
	for i, p := range batch {
		if err != nil {
			p.done <- rotated{err: err}
			continue
		}
		p.done <- results[i]
	}
	return err
}

// send runs batch's statements on one connection. If the outcome of their
// implicit COMMIT is unknown, each rotation is settled as a transaction's
// would be, once the database answers again.
func (b *rotationBatcher) send(ctx context.Context, batch []*pendingRotation) ([]rotated, error) {
	ctx, cancel := context.WithTimeout(ctx, b.s.timeout)
	defer cancel()
	conn, err := b.s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	q := lockBoundedBatch(b.s.timeout)
	for _, p := range batch {
		q.Queue(rotateAndIssue, p.args...)
	}
	pid, sent := conn.Conn().PgConn().PID(), time.Now()
	br := conn.SendBatch(ctx, q)
	results := make([]rotated, len(batch))
	err = skipLockBound(br)
	for i := 0; i < len(batch) && err == nil; i++ {
		err = br.QueryRow().Scan(&results[i].n, &results[i].disabled)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if unavailable(err) && commitOutcomeUnknown(err) { // what its callers are told
		for _, p := range batch {
			b.s.settleLater(p.rot, p.created, pid, sent)
		}
	}
	return results, err
}
