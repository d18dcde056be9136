-- Client cache invalidation: every process caches client registrations in
-- memory (storage/postgres/clientcache.go) and drops an entry when this
-- trigger says its row changed. The trigger, not the store, notifies, so a
-- change made by any means (another process, an older binary, psql) reaches
-- every cache. NOTIFY is delivered when the writing transaction commits and
-- not at all when it rolls back.
--
-- The payload is the client's id, or '' for "every client": for a TRUNCATE,
-- which fires no row triggers, and for an id too long for a NOTIFY payload
-- (under 8000 bytes), so that no write ever fails because of the cache. An
-- UPDATE that changes the id notifies the old id too.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION clients_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('wxidp_clients', CASE WHEN octet_length(OLD.id) < 7900 THEN OLD.id ELSE '' END);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('wxidp_clients', CASE WHEN octet_length(NEW.id) < 7900 THEN NEW.id ELSE '' END);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION clients_notify_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wxidp_clients', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER clients_notify AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION clients_notify();
CREATE TRIGGER clients_notify_truncate AFTER TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION clients_notify_truncate();

-- +goose Down
DROP TRIGGER IF EXISTS clients_notify_truncate ON clients;
DROP TRIGGER IF EXISTS clients_notify ON clients;
DROP FUNCTION IF EXISTS clients_notify_truncate();
DROP FUNCTION IF EXISTS clients_notify();
