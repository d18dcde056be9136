-- CORS: the browser origins (scheme://host[:port]) allowed to read a
-- client's answers at the token, revocation and userinfo endpoints. A
-- constant default makes ADD COLUMN a catalogue change, no table rewrite.
--
-- A CORS preflight names no client: it asks whether an origin is registered
-- on any client, an unauthenticated question that the GIN index answers
-- without a scan (the query is written as allowed_cors_origins @> ARRAY[$1]
-- so the planner can use it). clients holds a handful of rows, so a plain
-- CREATE INDEX inside the transaction locks it only for an instant.

-- +goose Up
ALTER TABLE clients ADD COLUMN allowed_cors_origins text[] NOT NULL DEFAULT '{}';
CREATE INDEX clients_allowed_cors_origins ON clients USING gin (allowed_cors_origins);

-- +goose Down
DROP INDEX IF EXISTS clients_allowed_cors_origins;
ALTER TABLE clients DROP COLUMN IF EXISTS allowed_cors_origins;
