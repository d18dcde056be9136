-- Initial schema: clients, signing keys, and one table per kind of fosite
-- session. Session tables are created with their request_id, client_id and
-- expires_at indexes: they grow to millions of rows, and adding an index
-- later would lock or slow a busy table.

-- +goose Up
CREATE TABLE clients (
    id                         text PRIMARY KEY,
    -- NULL for public clients.
    secret_hash                bytea,
    name                       text        NOT NULL DEFAULT '',
    grant_types                text[]      NOT NULL DEFAULT '{}',
    scopes                     text[]      NOT NULL DEFAULT '{}',
    audience                   text[]      NOT NULL DEFAULT '{}',
    redirect_uris              text[]      NOT NULL DEFAULT '{}',
    token_endpoint_auth_method text        NOT NULL,
    wechat_appid               text        NOT NULL DEFAULT '',
    -- AES-256-GCM ciphertext under WXIDP_SECRETS; NULL when none is registered.
    wechat_app_secret          bytea,
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL
);

CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    algorithm    text        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    -- AES-256-GCM ciphertext of the PKCS#8 DER key.
    private_key  bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    activated_at timestamptz,
    retired_at   timestamptz
);

-- At most one active key, enforced by the database so that processes starting
-- at the same time cannot each activate their own.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

-- The session tables share the storage.RequestRecord columns. session holds
-- the JSON-encoded fosite session as bytes: it is only ever read back whole,
-- and bytea keeps it byte-exact and spares a jsonb parse on every insert.
CREATE TABLE oauth2_access_tokens (
    signature          text PRIMARY KEY,
    request_id         text        NOT NULL,
    requested_at       timestamptz NOT NULL,
    client_id          text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    requested_scopes   text[]      NOT NULL,
    granted_scopes     text[]      NOT NULL,
    requested_audience text[]      NOT NULL,
    granted_audience   text[]      NOT NULL,
    form               text        NOT NULL,
    session            bytea,
    subject            text        NOT NULL,
    expires_at         timestamptz
);
CREATE INDEX oauth2_access_tokens_request_id ON oauth2_access_tokens (request_id);
CREATE INDEX oauth2_access_tokens_client_id ON oauth2_access_tokens (client_id);
CREATE INDEX oauth2_access_tokens_expires_at ON oauth2_access_tokens (expires_at);

CREATE TABLE oauth2_refresh_tokens (
    signature              text PRIMARY KEY,
    request_id             text        NOT NULL,
    requested_at           timestamptz NOT NULL,
    client_id              text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    requested_scopes       text[]      NOT NULL,
    granted_scopes         text[]      NOT NULL,
    requested_audience     text[]      NOT NULL,
    granted_audience       text[]      NOT NULL,
    form                   text        NOT NULL,
    session                bytea,
    subject                text        NOT NULL,
    expires_at             timestamptz,
    active                 boolean     NOT NULL DEFAULT true,
    -- The access token issued together with this refresh token: rotation
    -- deletes it.
    access_token_signature text        NOT NULL
);
CREATE INDEX oauth2_refresh_tokens_request_id ON oauth2_refresh_tokens (request_id);
CREATE INDEX oauth2_refresh_tokens_client_id ON oauth2_refresh_tokens (client_id);
CREATE INDEX oauth2_refresh_tokens_expires_at ON oauth2_refresh_tokens (expires_at);

CREATE TABLE oauth2_authorization_codes (
    signature          text PRIMARY KEY,
    request_id         text        NOT NULL,
    requested_at       timestamptz NOT NULL,
    client_id          text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    requested_scopes   text[]      NOT NULL,
    granted_scopes     text[]      NOT NULL,
    requested_audience text[]      NOT NULL,
    granted_audience   text[]      NOT NULL,
    form               text        NOT NULL,
    session            bytea,
    subject            text        NOT NULL,
    expires_at         timestamptz,
    active             boolean     NOT NULL DEFAULT true
);
CREATE INDEX oauth2_authorization_codes_request_id ON oauth2_authorization_codes (request_id);
CREATE INDEX oauth2_authorization_codes_client_id ON oauth2_authorization_codes (client_id);
CREATE INDEX oauth2_authorization_codes_expires_at ON oauth2_authorization_codes (expires_at);

CREATE TABLE oauth2_pkce_requests (
    signature          text PRIMARY KEY,
    request_id         text        NOT NULL,
    requested_at       timestamptz NOT NULL,
    client_id          text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    requested_scopes   text[]      NOT NULL,
    granted_scopes     text[]      NOT NULL,
    requested_audience text[]      NOT NULL,
    granted_audience   text[]      NOT NULL,
    form               text        NOT NULL,
    session            bytea,
    subject            text        NOT NULL,
    expires_at         timestamptz
);
CREATE INDEX oauth2_pkce_requests_request_id ON oauth2_pkce_requests (request_id);
CREATE INDEX oauth2_pkce_requests_client_id ON oauth2_pkce_requests (client_id);
CREATE INDEX oauth2_pkce_requests_expires_at ON oauth2_pkce_requests (expires_at);

-- Keyed by storage.HashKey(authorization code), never the raw code.
CREATE TABLE oauth2_oidc_sessions (
    signature          text PRIMARY KEY,
    request_id         text        NOT NULL,
    requested_at       timestamptz NOT NULL,
    client_id          text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    requested_scopes   text[]      NOT NULL,
    granted_scopes     text[]      NOT NULL,
    requested_audience text[]      NOT NULL,
    granted_audience   text[]      NOT NULL,
    form               text        NOT NULL,
    session            bytea,
    subject            text        NOT NULL,
    expires_at         timestamptz
);
CREATE INDEX oauth2_oidc_sessions_request_id ON oauth2_oidc_sessions (request_id);
CREATE INDEX oauth2_oidc_sessions_client_id ON oauth2_oidc_sessions (client_id);
CREATE INDEX oauth2_oidc_sessions_expires_at ON oauth2_oidc_sessions (expires_at);

-- JWT IDs of private_key_jwt client assertions seen, kept until they expire
-- so an assertion cannot be replayed.
CREATE TABLE client_assertion_jtis (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX client_assertion_jtis_expires_at ON client_assertion_jtis (expires_at);

-- +goose Down
DROP TABLE client_assertion_jtis;
DROP TABLE oauth2_oidc_sessions;
DROP TABLE oauth2_pkce_requests;
DROP TABLE oauth2_authorization_codes;
DROP TABLE oauth2_refresh_tokens;
DROP TABLE oauth2_access_tokens;
DROP TABLE signing_keys;
DROP TABLE clients;
