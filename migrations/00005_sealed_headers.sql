-- Indexes on the header of every sealed value: its first 5 bytes
-- (storage.SealedHeaderLen), the format version and the fingerprint of the
-- secret that sealed it. Start-up lists the distinct headers in use to
-- refuse a WXIDP_SECRETS that lacks one of those secrets; with these
-- indexes that is a walk from one distinct header to the next, a few index
-- probes however many rows there are, instead of a scan of every row.
--
-- The indexed expression must be written exactly as storage/postgres
-- queries it, or the planner cannot use the index: substring(col from 1 for
-- 5). Partial (NOT NULL) where the column is nullable, as the queries skip
-- NULLs. wechat_identities is the large table; the others hold a handful of
-- rows and are indexed too so that every kind is read the same way.
--
-- Cost: session_key is rewritten at every login, and an index on it means
-- those updates are no longer HOT (they add an entry to every index of
-- wechat_identities).
--
-- Run outside a transaction so the indexes are built CONCURRENTLY:
-- wechat_identities is written at every login, and a plain CREATE INDEX
-- would block logins for as long as the build scans it. Each statement is
-- therefore idempotent (see 00003_lifecycle.sql): a failed concurrent build
-- leaves an invalid index behind, which dropping first rebuilds on a rerun.

-- +goose NO TRANSACTION

-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS wechat_identities_session_key_header;
CREATE INDEX CONCURRENTLY wechat_identities_session_key_header
    ON wechat_identities (substring(session_key from 1 for 5)) WHERE session_key IS NOT NULL;

DROP INDEX CONCURRENTLY IF EXISTS clients_wechat_app_secret_header;
CREATE INDEX CONCURRENTLY clients_wechat_app_secret_header
    ON clients (substring(wechat_app_secret from 1 for 5)) WHERE wechat_app_secret IS NOT NULL;

-- private_key is NOT NULL: a plain index.
DROP INDEX CONCURRENTLY IF EXISTS signing_keys_private_key_header;
CREATE INDEX CONCURRENTLY signing_keys_private_key_header
    ON signing_keys (substring(private_key from 1 for 5));

DROP INDEX CONCURRENTLY IF EXISTS wechat_tokens_token_header;
CREATE INDEX CONCURRENTLY wechat_tokens_token_header
    ON wechat_tokens (substring(token from 1 for 5)) WHERE token IS NOT NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS wechat_tokens_token_header;
DROP INDEX CONCURRENTLY IF EXISTS signing_keys_private_key_header;
DROP INDEX CONCURRENTLY IF EXISTS clients_wechat_app_secret_header;
DROP INDEX CONCURRENTLY IF EXISTS wechat_identities_session_key_header;
