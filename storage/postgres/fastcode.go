package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"

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
// A caller that stops waiting (its request ended) answers unavailable while
// its statement may still commit, as a transaction whose COMMIT it stopped
// waiting for may: the code is then used and the tokens are held by no
// one, and the client's retry of the code is a replay, which revokes them.

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
	p := &pendingExchange{stmtCall: newStmtCall[codeInvalidation](sql, args), signature: signature}
	a, ok := s.exchanges.submit(ctx, p)
	switch {
	case !ok:
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

// pendingExchange is a code exchange's statement.
type pendingExchange struct {
	stmtCall[codeInvalidation]
	signature string // the batch's lock order
}

func newExchangeBatcher(s *Store) *stmtBatcher[codeInvalidation, *pendingExchange] {
	return &stmtBatcher[codeInvalidation, *pendingExchange]{
		s: s, what: "exchange authorize code",
		order: func(x, y *pendingExchange) int { return cmp.Compare(x.signature, y.signature) },
		scan:  func(row pgx.Row, c *codeInvalidation) error { return c.scan(row) },
	}
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
