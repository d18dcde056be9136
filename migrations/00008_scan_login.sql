-- Scan-to-login: the login tickets a website's QR codes stand for, the
-- browser sessions a completed login leaves behind, and two client fields
-- (RP-initiated logout targets, and the mini-program page a scan-to-login
-- QR code opens).
--
-- A ticket lives minutes: the janitor deletes it by expires_at, so the
-- table holds only the logins of the last few minutes and a cascade from a
-- deleted client (or user) scans little without an index of its own.
-- Every state change is one conditional UPDATE on the primary key
-- (storage/postgres/login.go). The tables are new and the client columns
-- have constant defaults (a catalogue change, no table rewrite), so the
-- migration's transaction blocks nothing for long.

-- +goose Up
CREATE TABLE login_tickets (
    -- The QR code's scene: public to whoever sees the screen.
    id           text PRIMARY KEY,
    -- storage.HashKey of the waiting browser's cookie, never the cookie.
    browser_hash text        NOT NULL,
    client_id    text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    -- The authorization request's query string, replayed on completion.
    request      text        NOT NULL,
    scopes       text[]      NOT NULL,
    state        text        NOT NULL
        CHECK (state IN ('waiting', 'scanned', 'approved', 'denied', 'consumed')),
    -- Who scanned it: NULL while waiting, and on a ticket retired
    -- (consumed) before anyone scanned it.
    user_id      text        REFERENCES users (id) ON DELETE CASCADE,
    source_ip    text        NOT NULL DEFAULT '',
    user_agent   text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    scanned_at   timestamptz,
    decided_at   timestamptz,
    CHECK (CASE state WHEN 'waiting' THEN user_id IS NULL WHEN 'consumed' THEN true ELSE user_id IS NOT NULL END)
);
CREATE INDEX login_tickets_expires_at ON login_tickets (expires_at);

-- Keyed by storage.HashKey of the browser's cookie, never the cookie.
CREATE TABLE browser_sessions (
    id         text PRIMARY KEY,
    user_id    text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time  timestamptz NOT NULL,
    amr        text[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX browser_sessions_expires_at ON browser_sessions (expires_at);
-- Sessions outlive tickets (days, not minutes): ending a user's sessions,
-- and the cascade of a deleted user, find them without a scan.
CREATE INDEX browser_sessions_user_id ON browser_sessions (user_id);

ALTER TABLE clients
    ADD COLUMN post_logout_redirect_uris text[] NOT NULL DEFAULT '{}',
    ADD COLUMN wechat_login_page         text   NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE clients
    DROP COLUMN IF EXISTS wechat_login_page,
    DROP COLUMN IF EXISTS post_logout_redirect_uris;
DROP TABLE IF EXISTS browser_sessions;
DROP TABLE IF EXISTS login_tickets;
