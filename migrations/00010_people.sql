-- People: the self-service profile, disabling a user, and what the admin
-- users API and erasure need to find a user's rows quickly.
--
-- Run outside a transaction so the indexes on the token tables are built
-- CONCURRENTLY (a plain CREATE INDEX would block every login and refresh for
-- as long as the build scans them); each statement is idempotent, so a
-- migration that failed halfway can simply run again.

-- +goose NO TRANSACTION

-- +goose Up

-- nickname and picture (an https URL) are what the mini-program collects with
-- WeChat's avatar and nickname components; profile_updated_at is the OIDC
-- updated_at claim. disabled_at: an operator disabled the user (NULL while
-- enabled). Catalog-only changes: no table rewrite.
ALTER TABLE users
    ADD COLUMN IF NOT EXISTS nickname           text,
    ADD COLUMN IF NOT EXISTS picture            text,
    ADD COLUMN IF NOT EXISTS profile_updated_at timestamptz,
    ADD COLUMN IF NOT EXISTS disabled_at        timestamptz;

-- The admin users list pages newest first and filters by phone and openid.
DROP INDEX CONCURRENTLY IF EXISTS users_created_at;
CREATE INDEX CONCURRENTLY users_created_at ON users (created_at, id);
DROP INDEX CONCURRENTLY IF EXISTS users_phone_number;
CREATE INDEX CONCURRENTLY users_phone_number ON users (phone_number) WHERE phone_number IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS wechat_identities_open_id;
CREATE INDEX CONCURRENTLY wechat_identities_open_id ON wechat_identities (open_id);

-- Disabling and erasing a user delete their tokens by subject, at once: the
-- two long-lived token tables need an index for it (authorization codes,
-- PKCE and OpenID Connect sessions live minutes and stay small).
DROP INDEX CONCURRENTLY IF EXISTS oauth2_access_tokens_subject;
CREATE INDEX CONCURRENTLY oauth2_access_tokens_subject ON oauth2_access_tokens (subject);
DROP INDEX CONCURRENTLY IF EXISTS oauth2_refresh_tokens_subject;
CREATE INDEX CONCURRENTLY oauth2_refresh_tokens_subject ON oauth2_refresh_tokens (subject);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS oauth2_refresh_tokens_subject;
DROP INDEX CONCURRENTLY IF EXISTS oauth2_access_tokens_subject;
DROP INDEX CONCURRENTLY IF EXISTS wechat_identities_open_id;
DROP INDEX CONCURRENTLY IF EXISTS users_phone_number;
DROP INDEX CONCURRENTLY IF EXISTS users_created_at;
ALTER TABLE users
    DROP COLUMN IF EXISTS disabled_at,
    DROP COLUMN IF EXISTS profile_updated_at,
    DROP COLUMN IF EXISTS picture,
    DROP COLUMN IF EXISTS nickname;
