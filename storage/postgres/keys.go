package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/storage"
)

// CreateSigningKey stores k, setting a zero CreatedAt to now. The partial
// unique index signing_keys_one_active turns a second active key into a
// unique violation, so k being active while another is gives
// storage.ErrAlreadyExists, as a taken kid does.
func (s *Store) CreateSigningKey(ctx context.Context, k *storage.SigningKey) error {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO signing_keys
		(kid, algorithm, state, private_key, created_at, activated_at, retired_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.KID, k.Algorithm, string(k.State), k.PrivateKey, k.CreatedAt, nullTime(k.ActivatedAt), nullTime(k.RetiredAt))
	return recordErr("create signing key", err)
}

// ListSigningKeys returns every key, newest CreatedAt first.
func (s *Store) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT kid, algorithm, state, private_key, created_at, activated_at, retired_at
		FROM signing_keys ORDER BY created_at DESC, kid`)
	if err != nil {
		return nil, recordErr("list signing keys", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.SigningKey, error) {
		var (
			k                  storage.SigningKey
			state              string
			activated, retired *time.Time
		)
		err := row.Scan(&k.KID, &k.Algorithm, &state, &k.PrivateKey, &k.CreatedAt, &activated, &retired)
		k.State = storage.KeyState(state)
		k.CreatedAt = k.CreatedAt.UTC()
		k.ActivatedAt, k.RetiredAt = zeroTime(activated), zeroTime(retired)
		return k, err
	})
	if err != nil {
		return nil, recordErr("list signing keys", err)
	}
	return keys, nil
}

// nullTime stores the zero time as NULL: timestamptz would otherwise keep
// year 1 and the Go zero value would not survive the round trip as IsZero.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// zeroTime is the inverse of nullTime, in UTC.
func zeroTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
