-- Users and their WeChat identities, replay protection for wx.login codes,
-- and the shared WeChat API access token of each appid.

-- +goose Up

-- A user is wxidp's own identity; id is the subject of every token issued for
-- it and is never a WeChat identifier, so an identity can gain a unionid
-- later without the subject changing (the Casdoor #1056/#2613 trap).
CREATE TABLE users (
    id           text PRIMARY KEY,
    -- As WeChat verified it; NULL when unknown.
    phone_number text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

-- One row per (appid, openid). union_id records what WeChat last reported;
-- which user a unionid joins is decided by wechat_unions, not by this column,
-- so an identity keeps its user when it gains a unionid another user holds.
CREATE TABLE wechat_identities (
    app_id      text        NOT NULL,
    open_id     text        NOT NULL,
    union_id    text,
    user_id     text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The session_key sealed under WXIDP_SECRETS, overwritten at every login.
    session_key bytea,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (app_id, open_id)
);
CREATE INDEX wechat_identities_union_id ON wechat_identities (union_id) WHERE union_id IS NOT NULL;
CREATE INDEX wechat_identities_user_id ON wechat_identities (user_id);

-- The user each unionid belongs to: the first user recorded with it. Its
-- primary key is what makes joins race-free: concurrent first logins of one
-- person in several apps all INSERT ... ON CONFLICT here, the database lets
-- exactly one insert win and hands every other the winner's user_id.
CREATE TABLE wechat_unions (
    union_id   text PRIMARY KEY,
    user_id    text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL
);
CREATE INDEX wechat_unions_user_id ON wechat_unions (user_id);

-- wx.login codes already presented, keyed by a hash of appid and code (never
-- the code), kept until the code would have expired at WeChat anyway.
CREATE TABLE wechat_codes (
    app_id     text        NOT NULL,
    code_hash  text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (app_id, code_hash)
);
CREATE INDEX wechat_codes_expires_at ON wechat_codes (expires_at);

-- One WeChat API access token per appid, shared by every process. A row may
-- exist with only a lease (the first refresh has not saved a token yet).
-- lease_until is a lease rather than a row lock, so no connection is held
-- while a process calls WeChat.
CREATE TABLE wechat_tokens (
    app_id      text PRIMARY KEY,
    -- AES-256-GCM ciphertext under WXIDP_SECRETS; NULL until first saved.
    token       bytea,
    expires_at  timestamptz,
    lease_until timestamptz,
    updated_at  timestamptz NOT NULL
);

-- +goose Down
DROP TABLE wechat_tokens;
DROP TABLE wechat_codes;
DROP TABLE wechat_unions;
DROP TABLE wechat_identities;
DROP TABLE users;
