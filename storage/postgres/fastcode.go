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

// fosite's authorization code handler writes in a transaction of its own:
// BEGIN with the code's invalidation, then the token inserts with COMMIT,
// two round trips and a commit per exchange. ExchangeAndIssue makes the
// invalidation and the inserts one statement (the invalidation's CTEs,
// then inserts that run only if it invalidated the code), so it needs no
// transaction, and statements of concurrent exchanges go in one pipeline
// and one commit (stmtBatcher). The invalidation's rules are
// InvalidateAuthorizeCodeSession's, by the same SQL.
//
// An exchange answered unavailable may still commit: its batch's COMMIT
// met an outage (the server may have it and commit it when it resumes), or
// its caller stopped waiting (its request ended) while the statement was
// queued or running. The client was told to retry, and a retry would find
// the code used: a replay, which revokes the tokens and ends the login. So
// such an exchange is settled as a refresh rotation is (unsettled.go): the
// code reads as unavailable in this process until the backend that had
// the COMMIT is gone, and if the exchange did commit, its tokens, which no
// answer handed out, are deleted and the code is unused again. The same
// holds for fosite's transactional path (Commit).

// exchangeCode: $1 the code's signature, then the access token's record
// columns; exchangeCodeRefresh adds the refresh token's and its
// access_token_signature.
var (
	exchangeCode        = invalidateCodeCTEs + tokenInserts(2, false, "upd") + invalidateCodeResult
	exchangeCodeRefresh = invalidateCodeCTEs + tokenInserts(2, true, "upd") + invalidateCodeResult
)

// ExchangeAndIssue invalidates the authorization code of signature as
// InvalidateAuthorizeCodeSession does and stores the tokens issue creates
// (an access token, and a refresh token or none, their writes deferred) in
// the same statement, only if it invalidated the code. Its answers are
// InvalidateAuthorizeCodeSession's: fosite.ErrNotFound for an unknown code,
// fosite.ErrInvalidatedAuthorizeCode for a used one (the loser of concurrent
// exchanges is answered after the winner committed), storage.ErrUserDisabled,
// an unavailable database; written is false with no error when the
// statement failed for another reason (a lock held past the batch's bound,
// say): nothing was written, and the caller takes the transactional path.
// issue's error is returned as it is.
func (s *Store) ExchangeAndIssue(ctx context.Context, signature string, issue func(context.Context) error) (written bool, _ error) {
	if _, inTx := txFrom(ctx); inTx {
		return false, errors.New("postgres: exchange and issue inside a transaction")
	}
	d, err := collectWrites(ctx, issue)
	if err != nil {
		return false, err
	}
	if d.access == nil {
		return false, errors.New("postgres: exchange and issue: an exchange issues an access token")
	}
	if !storableKey(signature) {
		return false, fosite.ErrNotFound
	}
	sql, args := exchangeCode, append([]any{signature}, d.access...)
	if d.refresh != nil {
		sql, args = exchangeCodeRefresh, append(args, d.refresh...)
	}
	if knownDown(ctx) {
		return false, errKnownUnavailable
	}
	if s.unsettled.has(unsettledCode(signature)) {
		return false, errCodeUnsettled
	}
	p := &pendingExchange{
		stmtCall:  newStmtCall[codeInvalidation](sql, args),
		signature: signature,
		created:   txCreated{access: []string{d.access[0].(string)}},
	}
	if d.refresh != nil {
		p.created.refresh = []string{d.refresh[0].(string)}
	}
	a, ok := s.exchanges.submit(ctx, p)
	switch {
	case !ok:
		undoIfWritten(s, unsettledCode(signature), p.done, func(c codeInvalidation) bool { return c.invalidated },
			func(ctx context.Context) error { return s.undoExchange(ctx, signature, p.created) })
		return false, noteDown(ctx, fmt.Errorf("%w: exchange authorize code: %w", storage.ErrUnavailable, ctx.Err()))
	case a.err != nil:
		return false, noteDown(ctx, a.err)
	case a.failed:
		return false, nil
	}
	if err := a.r.err("exchange authorize code"); err != nil {
		return false, err
	}
	return true, nil
}

// pendingExchange is a code exchange's statement, with what undoing it
// needs.
type pendingExchange struct {
	stmtCall[codeInvalidation]
	signature string    // the batch's lock order
	created   txCreated // the tokens its statement inserts
}

func newExchangeBatcher(s *Store) *stmtBatcher[codeInvalidation, *pendingExchange] {
	return &stmtBatcher[codeInvalidation, *pendingExchange]{
		s: s, what: "exchange authorize code",
		order: func(x, y *pendingExchange) int { return cmp.Compare(x.signature, y.signature) },
		scan:  func(row pgx.Row, c *codeInvalidation) error { return c.scan(row) },
		uncommitted: func(batch []*pendingExchange, pid uint32, sent time.Time) {
			for _, p := range batch {
				s.settleExchangeLater(p.signature, p.created, pid, sent)
			}
		},
	}
}

var errCodeUnsettled = fmt.Errorf("%w: an earlier exchange of this code met a database outage and is being settled", storage.ErrUnavailable)

// unsettledCode is a code's key among the unsettled (unsettled.go), apart
// from the refresh tokens' signatures.
func unsettledCode(signature string) string { return "code:" + signature }

// settleExchangeLater settles, in the background, the exchange of the code
// signature whose COMMIT had an unknown outcome; it created created, on
// backend pid, sent at sent.
func (s *Store) settleExchangeLater(signature string, created txCreated, pid uint32, sent time.Time) {
	s.unsettled.later(unsettledCode(signature), func(ctx context.Context) error {
		return s.settle(ctx, pid, sent, func(ctx context.Context) error { return s.undoExchange(ctx, signature, created) })
	})
}

// undoExchange undoes a committed exchange of the code signature: the
// tokens it created are deleted and the code is unused again, unless they
// were revoked since (a replay answered in another process or before the
// code was marked, a disable, an erasure) or never committed, in which
// case nothing changes. The witness is the refresh token, still active,
// when the exchange issued one (every revocation deactivates it first, in
// the same transaction as the access token's delete: Provider.codeReused,
// people.go; the janitor keeps it as long as the chain lives), else the
// access token. Rows are locked refresh first, then access, as disabling
// and rotating lock them, so the two cannot deadlock.
func (s *Store) undoExchange(ctx context.Context, signature string, created txCreated) error {
	var undone int64
	err := pgx.BeginTxFunc(ctx, s.pool, txOptions, func(tx pgx.Tx) error {
		witness, rest := `DELETE FROM oauth2_refresh_tokens WHERE signature = ANY($1) AND active`, created.refresh
		then := `DELETE FROM oauth2_access_tokens WHERE signature = ANY($1)`
		if len(created.refresh) == 0 {
			witness, rest, then = then, created.access, ""
		}
		tag, err := tx.Exec(ctx, witness, rest)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		if then != "" {
			if _, err := tx.Exec(ctx, then, created.access); err != nil {
				return err
			}
		}
		tag, err = tx.Exec(ctx, `UPDATE oauth2_authorization_codes SET active = true WHERE signature = $1 AND NOT active`, signature)
		undone = tag.RowsAffected()
		return err
	})
	if err == nil {
		s.exchangesUndone.Add(undone)
	}
	return err
}

// invalidateCodeCTEs read-lock the code's user (FOR SHARE) and mark the
// code used only if it is unused and its user not disabled ($1: the
// code's signature); invalidateCodeResult is their codeInvalidation.
const (
	invalidateCodeCTEs = `WITH usr AS (
		SELECT u.disabled_at IS NOT NULL AS disabled FROM users u
		WHERE u.id = (SELECT subject FROM oauth2_authorization_codes WHERE signature = $1)
		FOR SHARE
	), upd AS (
		UPDATE oauth2_authorization_codes SET active = false
		WHERE signature = $1 AND active AND NOT EXISTS (SELECT 1 FROM usr WHERE disabled)
		RETURNING 1
	)`
	invalidateCodeResult = `
	SELECT EXISTS (SELECT 1 FROM oauth2_authorization_codes WHERE signature = $1),
		EXISTS (SELECT 1 FROM upd), EXISTS (SELECT 1 FROM usr WHERE disabled)`
)

// codeInvalidation is the row of invalidateCodeResult.
type codeInvalidation struct{ found, invalidated, refused bool }

func (c *codeInvalidation) scan(row pgx.Row) error {
	return row.Scan(&c.found, &c.invalidated, &c.refused)
}

// err is the invalidation's answer: nil if the code was invalidated.
func (c codeInvalidation) err(op string) error {
	switch {
	case !c.found:
		return fosite.ErrNotFound
	case c.refused:
		return fmt.Errorf("postgres: %s: %w", op, storage.ErrUserDisabled)
	case !c.invalidated:
		return fosite.ErrInvalidatedAuthorizeCode
	}
	return nil
}
