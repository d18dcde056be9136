package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// purgeStatement deletes at most $2 rows of one table that expired before
// $1 (and, with inactive, refresh tokens deactivated before $3).
type purgeStatement struct {
	table    string
	sql      string
	inactive bool
}

// purgeExpired builds the delete of at most $2 rows of table whose
// expires_at is before $1. The rows are picked by walking the table's
// expires_at index oldest first under LIMIT, so each call does bounded work
// however large the backlog; SKIP LOCKED passes over rows a request (or
// another janitor) holds instead of waiting for it. Rows with no expiry
// (NULL) never match. key is the primary key, a column list for composite
// keys.
func purgeExpired(table, key string) purgeStatement {
	return purgeStatement{table: table, sql: `DELETE FROM ` + table + ` WHERE (` + key + `) IN (
		SELECT ` + key + ` FROM ` + table + ` WHERE expires_at < $1
		ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`}
}

// purgeRefreshTokens deletes at most $2 refresh tokens that expired before
// $1 or were deactivated before $3. FOR UPDATE cannot be combined with
// UNION, so each condition gets a CTE walking its own index (expires_at, and
// the partial deactivated_at index, whose WHERE NOT active this query
// repeats so the planner may use it); the second takes only what the first
// left of the batch, and skips expired rows so the two never pick one row
// twice. Tokens deactivated before the migration that added deactivated_at
// have it NULL and go by expiry only.
const purgeRefreshTokens = `WITH expired AS (
		SELECT signature FROM oauth2_refresh_tokens WHERE expires_at < $1
		ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
	), inactive AS (
		SELECT signature FROM oauth2_refresh_tokens
		WHERE NOT active AND deactivated_at < $3 AND (expires_at < $1) IS NOT TRUE
		ORDER BY deactivated_at LIMIT $2 - (SELECT count(*) FROM expired) FOR UPDATE SKIP LOCKED
	)
	DELETE FROM oauth2_refresh_tokens
	WHERE signature IN (SELECT signature FROM expired UNION ALL SELECT signature FROM inactive)`

// purgeStatements run in this order, and their tables name the counts in
// storage.PurgeStats. Authorization codes go by expiry whether used or not:
// a used code stays while the code itself would still be accepted, so a
// replay is recognised as reuse (and revokes what it issued).
var purgeStatements = []purgeStatement{
	purgeExpired("oauth2_access_tokens", "signature"),
	{table: "oauth2_refresh_tokens", sql: purgeRefreshTokens, inactive: true},
	purgeExpired("oauth2_authorization_codes", "signature"),
	purgeExpired("oauth2_pkce_requests", "signature"),
	purgeExpired("oauth2_oidc_sessions", "signature"),
	purgeExpired("client_assertion_jtis", "jti"),
	purgeExpired("wechat_codes", "app_id, code_hash"),
	purgeExpired("login_tickets", "id"),
	purgeExpired("browser_sessions", "id"),
}

// PurgeExpired deletes, per table, at most batch rows that expired before
// expiredBefore, and refresh tokens deactivated before inactiveBefore. Each
// table's delete is a statement of its own (its own transaction unless ctx
// carries one), so row locks are held for one short batch at a time. The
// counts deleted so far are returned with an error too.
//
// inactiveBefore should lie further back than the refresh grace period: a
// purged token can no longer be retried, nor recognised as reused.
func (s *Store) PurgeExpired(ctx context.Context, expiredBefore, inactiveBefore time.Time, batch int) (storage.PurgeStats, error) {
	if batch < 1 {
		return nil, fmt.Errorf("postgres: purge: batch must be at least 1, got %d", batch)
	}
	stats := make(storage.PurgeStats, len(purgeStatements))
	for _, p := range purgeStatements {
		args := []any{expiredBefore, batch}
		if p.inactive {
			args = append(args, inactiveBefore)
		}
		tag, err := s.db(ctx).Exec(ctx, p.sql, args...)
		if err != nil {
			return stats, recordErr("purge "+p.table, err)
		}
		stats[p.table] = int(tag.RowsAffected())
	}
	return stats, nil
}

// tryLease takes or renews a lease in one conditional upsert: a missing row
// is inserted, an existing one is overwritten only if it has run out or
// already belongs to the caller. Concurrent callers serialize on the primary
// key for this one statement; each loser re-reads the winner's row in the
// WHERE and matches nothing (zero rows). A lease runs until `until`,
// exclusive, as the WeChat token lease does.
const tryLease = `INSERT INTO leases (name, holder, until) VALUES ($1, $2, $4)
	ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
	WHERE leases.until <= $3 OR leases.holder = EXCLUDED.holder`

// TryLease takes the named lease for holder until `until` if it is free,
// has run out by now, or is holder's already (then it is extended, or
// shortened, to until); it reports whether holder has it now.
func (s *Store) TryLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	tag, err := s.db(ctx).Exec(ctx, tryLease, name, holder, now, until)
	if err != nil {
		return false, recordErr("try lease", err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLease gives up the named lease if holder has it, so the next taker
// need not wait for it to run out; another holder's lease is left alone.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.db(ctx).Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder)
	return recordErr("release lease", err)
}
