-- Per-client token lifetimes, in whole seconds; 0 uses the server's
-- (WXIDP_ACCESS_TOKEN_TTL, WXIDP_REFRESH_TOKEN_TTL, WXIDP_SESSION_MAX_AGE).
-- The registry refuses a value above the server's; the provider also takes
-- the smaller of the two at issuance, so lowering a server setting later
-- shortens every client's too. Adding a column with a constant default is
-- a catalog-only change: no table rewrite.

-- +goose Up
ALTER TABLE clients
    ADD COLUMN access_token_ttl_seconds  integer NOT NULL DEFAULT 0 CHECK (access_token_ttl_seconds >= 0),
    ADD COLUMN refresh_token_ttl_seconds integer NOT NULL DEFAULT 0 CHECK (refresh_token_ttl_seconds >= 0),
    ADD COLUMN session_max_age_seconds   integer NOT NULL DEFAULT 0 CHECK (session_max_age_seconds >= 0);

-- +goose Down
ALTER TABLE clients
    DROP COLUMN IF EXISTS session_max_age_seconds,
    DROP COLUMN IF EXISTS refresh_token_ttl_seconds,
    DROP COLUMN IF EXISTS access_token_ttl_seconds;
