package postgres

import (
	"context"
	"fmt"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// CreateAccessTokenSession stores the request behind an access token.
func (s *Store) CreateAccessTokenSession(ctx context.Context, signature string, r fosite.Requester) error {
	if st, inTx := txFrom(ctx); inTx || s.accessWriter == nil || ctx.Value(deferredKey{}) != nil {
		if inTx {
			st.accessCreated = append(st.accessCreated, signature)
		}
		return s.create(ctx, accessTokens, signature, r, fosite.AccessToken)
	}
	if knownDown(ctx) {
		return errKnownUnavailable
	}
	args, err := recordArgs(signature, r, fosite.AccessToken)
	if err != nil {
		return err
	}
	return s.accessWriter.insert(ctx, args)
}

// GetAccessTokenSession returns the request behind an access token, or
// fosite.ErrNotFound.
func (s *Store) GetAccessTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, _, err := s.get(ctx, accessTokens, signature, session)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeleteAccessTokenSession deletes an access token.
func (s *Store) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return s.remove(ctx, accessTokens, signature)
}

// CreateRefreshTokenSession stores the request behind a refresh token, with
// the signature of the access token issued alongside so rotation can delete
// it.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, r fosite.Requester) error {
	if st, inTx := txFrom(ctx); inTx {
		st.refreshCreated = append(st.refreshCreated, signature)
	}
	return s.create(ctx, refreshTokens, signature, r, fosite.RefreshToken, accessSignature)
}

// GetRefreshTokenSession returns the request behind a refresh token. For a
// deactivated token it returns the request and fosite.ErrInactiveToken:
// fosite treats that as reuse and revokes the request's tokens, and it
// dereferences the request to do so. A token still in its grace period reads
// as active.
func (s *Store) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	if s.unsettled.has(signature) {
		return nil, errUnsettled
	}
	req, active, err := s.get(ctx, refreshTokens, signature, session, s.graceCutoff(s.clockNow()))
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fosite.ErrInactiveToken
	}
	return req, nil
}

// DeleteRefreshTokenSession deletes a refresh token.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return s.remove(ctx, refreshTokens, signature)
}

// rotateRefreshToken deactivates the presented refresh token only if it is
// still active, and deletes the access token issued with it, in one
// statement: a concurrent rotation of the same token blocks on the row lock,
// then re-checks the WHERE against the committed row and matches nothing.
// Reading the flag and writing it in separate statements would let both
// refreshes win (each issuing tokens) and the next reuse check revoke the
// winner's chain. Being one statement, it is atomic with or without the
// caller's transaction, and costs one round trip.
//
// With a grace period ($4, the cutoff, not NULL) the same statement also
// matches a token rotated after the cutoff whose grace is unused, and spends
// the grace: of concurrent rotations of a fresh token, the first rotates, the
// second (re-checking the committed row) uses the grace, the rest match
// nothing. SET sees the row as it was, so grace_used = NOT active is true
// exactly for a grace use, and RETURNING hands back the new value: the grace
// use deletes nothing (its access token went at the rotation, and the
// signature may have been reissued since) and keeps its deactivation time,
// so the grace is measured from the real rotation.
//
// The data-modifying CTE's DELETE sees the UPDATE's RETURNING rows, not its
// effect on the table, which is all it needs.
//
// The token's user is read-locked (FOR SHARE) until the transaction ends and
// a disabled user's token does not rotate: disabling updates the user row,
// so it waits for this rotation's new tokens to commit and then deletes them,
// and a rotation after it sees the user disabled. A subject that is not a
// user (client_credentials) matches no user row and rotates; so would an
// erased user's, but erasure deletes their tokens under the same lock, so
// none survives it.
const rotateRefreshToken = rotationCTEs + rotationResult

// rotationCTEs are the rotation's locks and writes, which RotateAndIssue
// extends with the new tokens' inserts (fastrefresh.go).
const rotationCTEs = `WITH usr AS (
		SELECT u.disabled_at IS NOT NULL AS disabled FROM users u
		WHERE u.id = (SELECT subject FROM oauth2_refresh_tokens WHERE signature = $1)
		FOR SHARE
	), rotated AS (
		UPDATE oauth2_refresh_tokens SET active = false,
			deactivated_at = CASE WHEN active THEN $3 ELSE deactivated_at END,
			grace_used = NOT active
		WHERE signature = $1 AND request_id = $2
			AND (active OR (NOT grace_used AND deactivated_at > $4))
			AND NOT EXISTS (SELECT 1 FROM usr WHERE disabled)
		RETURNING access_token_signature, grace_used
	), deleted AS (
		DELETE FROM oauth2_access_tokens a USING rotated r
		WHERE a.signature = r.access_token_signature AND NOT r.grace_used
	)`

const rotationResult = `
	SELECT count(*), EXISTS (SELECT 1 FROM usr WHERE disabled) FROM rotated`

// RotateRefreshToken deactivates exactly the presented refresh token and
// deletes the access token issued with it; other tokens of the request stay
// valid. An unknown or already inactive token is fosite.ErrNotFound, which
// fosite answers with "retry", so the loser of two concurrent refreshes of
// one token neither issues tokens nor revokes the winner's. A token in its
// grace period rotates once more, deleting nothing.
//
// requestID must match too, so a signature presented under another grant's
// ID is not that grant's token.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	now := s.clockNow()
	var (
		n        int
		disabled bool
	)
	err := s.db(ctx).QueryRow(ctx, rotateRefreshToken, signature, requestID, now, s.graceCutoff(now)).Scan(&n, &disabled)
	if err != nil {
		return fositeErr("rotate refresh token", err)
	}
	if disabled {
		return fmt.Errorf("postgres: rotate refresh token: %w", storage.ErrUserDisabled)
	}
	if n == 0 {
		return fosite.ErrNotFound
	}
	if st, inTx := txFrom(ctx); inTx {
		st.rotations = append(st.rotations, rotation{presented: signature, requestID: requestID, at: now})
	}
	return nil
}

// revokeRefreshTokens deactivates every refresh token of the request and
// takes away any grace: it matches rotated tokens whose grace is unused too,
// whether or not this process thinks their grace ran out, since another
// process with a slower clock or a longer grace setting might not. That
// touches each rotated token of the chain once; later revocations find only
// active ones. A rotated token keeps its deactivation time.
const revokeRefreshTokens = `UPDATE oauth2_refresh_tokens SET active = false, grace_used = true,
		deactivated_at = coalesce(deactivated_at, $2)
	WHERE request_id = $1 AND (active OR NOT grace_used)`

// RevokeRefreshToken deactivates every refresh token of the request. Rows are
// kept (inactive) so a later use of one is still recognised as reuse.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	_, err := s.db(ctx).Exec(ctx, revokeRefreshTokens, requestID, s.clockNow())
	return fositeErr("revoke refresh tokens", err)
}

// RevokeAccessToken deletes every access token of the request.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	_, err := s.db(ctx).Exec(ctx, `DELETE FROM oauth2_access_tokens WHERE request_id = $1`, requestID)
	return fositeErr("revoke access tokens", err)
}
