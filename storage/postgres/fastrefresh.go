package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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
var rotateAndIssue = rotationCTEs + tokenInserts(5, true, "rotated") + rotationResult

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
		stmtCall: newStmtCall[rotated](rotateAndIssue, append(append([]any{presented, requestID, now, s.graceCutoff(now)}, d.access...), d.refresh...)),
		rot:      rotation{presented: presented, requestID: requestID, at: now},
		created:  txCreated{access: []string{d.access[0].(string)}, refresh: []string{d.refresh[0].(string)}},
	}
	a, ok := s.rotations.submit(ctx, p)
	if !ok {
		undoIfWritten(s, presented, p.done, func(r rotated) bool { return r.n > 0 },
			func(ctx context.Context) error { return s.undo(ctx, p.rot, p.created) })
		// Unavailable even when the client went away (context.Canceled):
		// the answer says the token is still the one to present.
		return false, noteDown(ctx, fmt.Errorf("%w: rotate refresh token: %w", storage.ErrUnavailable, ctx.Err()))
	}
	switch {
	case a.err != nil:
		return false, noteDown(ctx, a.err)
	case a.failed:
		return false, nil
	case a.r.disabled:
		return false, fmt.Errorf("postgres: rotate refresh token: %w", storage.ErrUserDisabled)
	case a.r.n == 0:
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

// pendingRotation is a refresh's statement, with what undoing its
// rotation needs.
type pendingRotation struct {
	stmtCall[rotated]
	rot     rotation
	created txCreated // the tokens its statement inserts
}

// rotated is the row of rotateAndIssue.
type rotated struct {
	n        int  // rotated: 1 or 0
	disabled bool // the token's user is disabled
}

// newRotationBatcher sorts a batch by presented token, so two batches that
// share tokens lock them in the same order. If the outcome of a batch's
// COMMIT is unknown, each rotation is settled as a transaction's would be,
// once the database answers again.
func newRotationBatcher(s *Store) *stmtBatcher[rotated, *pendingRotation] {
	return &stmtBatcher[rotated, *pendingRotation]{
		s: s, what: "rotate refresh token",
		order: func(x, y *pendingRotation) int { return cmp.Compare(x.rot.presented, y.rot.presented) },
		scan:  func(row pgx.Row, r *rotated) error { return row.Scan(&r.n, &r.disabled) },
		uncommitted: func(batch []*pendingRotation, pid uint32, sent time.Time) {
			for _, p := range batch {
				s.settleLater(p.rot, p.created, pid, sent)
			}
		},
	}
}
