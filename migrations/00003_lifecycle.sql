-- Token lifecycle: when a refresh token was deactivated (for the refresh
-- grace period and for purging long-inactive tokens), and leases that let one
-- process at a time run the janitor.
--
-- Run outside a transaction so the new index is built CONCURRENTLY: the
-- refresh token table is the largest and busiest, and a plain CREATE INDEX
-- would block every refresh for as long as the build scans it. Each
-- statement is therefore idempotent, so a migration that failed halfway can
-- simply run again.

-- +goose NO TRANSACTION

-- +goose Up

-- deactivated_at is set by RotateRefreshToken and RevokeRefreshToken; NULL
-- while active, and for tokens deactivated before this migration (those are
-- purged by expires_at only: their deactivation time is unknown, and
-- guessing "now" would rewrite every inactive row here).
-- grace_used: the one retry the grace period allows was spent, or the token
-- was revoked (a revoked token has no grace). Both column additions are
-- catalog-only changes: no table rewrite.
ALTER TABLE oauth2_refresh_tokens
    ADD COLUMN IF NOT EXISTS deactivated_at timestamptz,
    ADD COLUMN IF NOT EXISTS grace_used     boolean NOT NULL DEFAULT false;

-- The janitor's inactive purge walks this index oldest first. Partial: active
-- tokens, the bulk of reads and writes, are not in it. A failed concurrent
-- build leaves an invalid index behind; dropping first makes a rerun rebuild
-- it instead of skipping it.
DROP INDEX CONCURRENTLY IF EXISTS oauth2_refresh_tokens_deactivated_at;
CREATE INDEX CONCURRENTLY oauth2_refresh_tokens_deactivated_at
    ON oauth2_refresh_tokens (deactivated_at) WHERE NOT active;

-- Named leases (e.g. "janitor"): holder may do the named work until `until`.
-- A lease, not a held lock, so no connection stays open while it works, and a
-- holder that dies loses it when it runs out.
CREATE TABLE IF NOT EXISTS leases (
    name   text PRIMARY KEY,
    holder text        NOT NULL,
    until  timestamptz NOT NULL
);

-- +goose Down
DROP TABLE IF EXISTS leases;
DROP INDEX CONCURRENTLY IF EXISTS oauth2_refresh_tokens_deactivated_at;
ALTER TABLE oauth2_refresh_tokens
    DROP COLUMN IF EXISTS grace_used,
    DROP COLUMN IF EXISTS deactivated_at;
