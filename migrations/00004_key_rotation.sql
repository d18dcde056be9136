-- Signing key rotation: next -> active -> retired, at most one next key.
--
-- signing_keys holds a handful of rows, so this runs in goose's usual
-- transaction: the index builds instantly, and a failure leaves nothing
-- half done.

-- +goose Up

-- DeleteRetiredSigningKeys deletes by retired_at, and a NULL there matches
-- nothing: a retired key stored without its retirement time would be kept
-- forever. Counting such keys as retired now only keeps them one token
-- lifetime longer than needed. Not undone by Down: the time is true enough.
UPDATE signing_keys SET retired_at = now() WHERE state = 'retired' AND retired_at IS NULL;

-- At most one next key, as signing_keys_one_active does for the active key:
-- processes creating a next key at the same time cannot each publish their
-- own, and a rotation that promoted the next key while another inserted a
-- second one would fail rather than leave two candidates. Nothing in wxidp
-- created next keys before this migration; a database holding two (made by
-- hand) fails here unchanged, for an operator to decide which to keep.
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

-- +goose Down
DROP INDEX signing_keys_one_next;
