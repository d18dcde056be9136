-- The audit trail: admin actions and security events (see the audit
-- package). Append-only: rows are never updated (a trigger refuses it);
-- the janitor deletes those older than WXIDP_AUDIT_RETENTION. No column
-- ever holds a secret.
--
-- Listing pages newest first by (created_at, id), a total order that a
-- cursor can resume from; every index ends with those two columns so each
-- filter is an index walk in that order, and the janitor's purge walks
-- audit_events_time from its oldest end. The table is new, so building the
-- indexes in the migration's transaction blocks nothing.

-- +goose Up
CREATE TABLE audit_events (
    id         bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL,
    type       text NOT NULL,
    actor      text NOT NULL DEFAULT '',
    source     text NOT NULL DEFAULT '',
    request_id text NOT NULL DEFAULT '',
    target     text NOT NULL DEFAULT '',
    outcome    text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_time ON audit_events (created_at, id);
CREATE INDEX audit_events_type_time ON audit_events (type, created_at, id);
CREATE INDEX audit_events_target_time ON audit_events (target, created_at, id);

-- +goose StatementBegin
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

-- +goose Down
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
