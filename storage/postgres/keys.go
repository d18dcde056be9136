package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/storage"
)

// CreateSigningKey stores k, setting a zero CreatedAt to now. The partial
// unique indexes signing_keys_one_active and signing_keys_one_next turn a
// second active or next key into a unique violation, so k being active (or
// next) while another is gives storage.ErrAlreadyExists, as a taken kid
// does.
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

// lockRotation locks the active and next keys for a rotation, in kid order.
// A concurrent rotation blocks here until this one ends; then, at READ
// COMMITTED, PostgreSQL re-checks each row it waited for against the WHERE
// and returns only what still matches in its latest version. The old next
// key is active by then, and the new next key was committed after the
// waiter's snapshot and is not returned either: the loser finds no next key
// and gets storage.ErrNotReady, deterministically, never a unique violation
// or a serialization failure. Locking in kid order (not next first) is the
// order ResealAll's batched updates take row locks in, so the two cannot
// deadlock.
const lockRotation = `SELECT kid, state, created_at FROM signing_keys
	WHERE state IN ('active', 'next') ORDER BY kid FOR UPDATE`

// The rotation's writes, in an order that never has two active or two next
// rows at once, so the partial unique indexes only ever object to a genuine
// conflict. The active key is retired by state rather than by the kid
// locked above: an active key committed since (a first start that found
// none) is retired too rather than failing the activation.
const (
	retireActive = `UPDATE signing_keys SET state = 'retired', retired_at = $1 WHERE state = 'active'`
	activateNext = `UPDATE signing_keys SET state = 'active', activated_at = $1 WHERE kid = $2 AND state = 'next'`
	insertNext   = `INSERT INTO signing_keys (kid, algorithm, state, private_key, created_at)
		VALUES ($1, $2, 'next', $3, $4)`
)

// RotateSigningKeys promotes the next key to active, retires the active one
// and inserts newNext as the next key, in one transaction (a savepoint of
// the caller's, if ctx carries one, so a refused rotation leaves the
// caller's transaction usable). A transaction of its own runs at READ
// COMMITTED whatever the server's default: lockRotation relies on it to
// hand losers storage.ErrNotReady. newNext is stored as a next key
// whatever its State and activation or retirement times say; on success it
// is updated to what was stored (State next, CreatedAt set if zero). A
// zero now means the current time. A newNext whose kid is taken gives
// storage.ErrAlreadyExists and changes nothing.
func (s *Store) RotateSigningKeys(ctx context.Context, newNext *storage.SigningKey, notBefore, at time.Time) error {
	if newNext == nil {
		return errors.New("postgres: rotate signing keys: newNext is nil")
	}
	if at.IsZero() {
		at = now()
	}
	k := storage.SigningKey{KID: newNext.KID, Algorithm: newNext.Algorithm, State: storage.KeyNext,
		PrivateKey: newNext.PrivateKey, CreatedAt: newNext.CreatedAt}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	err := s.inTx(ctx, func(ctx context.Context, tx querier) error {
		nextKID, err := lockNextKey(ctx, tx, notBefore)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(retireActive, at)
		b.Queue(activateNext, at, nextKID)
		b.Queue(insertNext, k.KID, k.Algorithm, k.PrivateKey, k.CreatedAt)
		return tx.SendBatch(ctx, b).Close()
	})
	switch {
	case err == nil:
		*newNext = k
		return nil
	case errors.Is(err, storage.ErrNotReady):
		return err
	}
	return recordErr("rotate signing keys", err)
}

// lockNextKey runs lockRotation and returns the kid of the next key, or
// storage.ErrNotReady if there is none or it was created after notBefore.
func lockNextKey(ctx context.Context, tx querier, notBefore time.Time) (string, error) {
	rows, err := tx.Query(ctx, lockRotation)
	if err != nil {
		return "", err
	}
	type locked struct {
		kid, state string
		created    time.Time
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (locked, error) {
		var l locked
		err := row.Scan(&l.kid, &l.state, &l.created)
		return l, err
	})
	if err != nil {
		return "", err
	}
	for _, l := range keys {
		if l.state != string(storage.KeyNext) {
			continue
		}
		if l.created.After(notBefore) {
			return "", fmt.Errorf("postgres: rotate signing keys: next key %s created %v, after %v: %w",
				l.kid, l.created.UTC(), notBefore.UTC(), storage.ErrNotReady)
		}
		return l.kid, nil
	}
	return "", fmt.Errorf("postgres: rotate signing keys: no next key: %w", storage.ErrNotReady)
}

// lockRevocation locks the key to revoke together with the active and next
// keys, in kid order, so a revocation and a rotation (or two revocations)
// run one after the other, and, like lockRotation, in the order ResealAll
// takes row locks. After waiting, READ COMMITTED hands back each row's
// latest version: a key revoked meanwhile is gone (storage.ErrNotFound),
// and a key rotated meanwhile is revoked in its new state.
const lockRevocation = `SELECT kid, state FROM signing_keys
	WHERE state IN ('active', 'next') OR kid = $1 ORDER BY kid FOR UPDATE`

// The revocation's writes. The next key is promoted by state rather than by
// a kid read under the lock: each statement sees the latest committed rows,
// so a next key created since (a first start that found none) is promoted
// rather than left beside a second next key.
const (
	deleteKey   = `DELETE FROM signing_keys WHERE kid = $1`
	promoteNext = `UPDATE signing_keys SET state = 'active', activated_at = $1 WHERE state = 'next'`
	insertKey   = `INSERT INTO signing_keys (kid, algorithm, state, private_key, created_at, activated_at)
		VALUES ($1, $2, $3, $4, $5, $6)`
)

// RevokeSigningKey deletes kid and, if it was active or next, fills its
// place (see storage.KeyStore), in one transaction (a savepoint of the
// caller's, if ctx carries one) at READ COMMITTED, which lockRevocation
// relies on. A zero now means the current time.
func (s *Store) RevokeSigningKey(ctx context.Context, kid string, newNext *storage.SigningKey, at time.Time) error {
	if newNext == nil {
		return errors.New("postgres: revoke signing key: newNext is nil")
	}
	if newNext.KID == kid {
		return fmt.Errorf("postgres: revoke signing key: newNext reuses kid %q: %w", kid, storage.ErrAlreadyExists)
	}
	if at.IsZero() {
		at = now()
	}
	at = at.UTC().Truncate(time.Microsecond)
	k := storage.SigningKey{KID: newNext.KID, Algorithm: newNext.Algorithm, PrivateKey: newNext.PrivateKey,
		CreatedAt: newNext.CreatedAt}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	err := s.inTx(ctx, func(ctx context.Context, tx querier) error {
		state, err := lockRevoked(ctx, tx, kid)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, deleteKey, kid); err != nil {
			return err
		}
		switch state {
		case storage.KeyActive:
			tag, err := tx.Exec(ctx, promoteNext, at)
			if err != nil {
				return err
			}
			k.State = storage.KeyNext
			if tag.RowsAffected() == 0 {
				// No next key to take over: newNext signs at once, so an
				// active key always remains.
				k.State, k.ActivatedAt = storage.KeyActive, at
			}
		case storage.KeyNext:
			k.State = storage.KeyNext
		default:
			return nil
		}
		_, err = tx.Exec(ctx, insertKey, k.KID, k.Algorithm, string(k.State), k.PrivateKey, k.CreatedAt, nullTime(k.ActivatedAt))
		return err
	})
	if err != nil {
		return recordErr("revoke signing key", err)
	}
	if k.State != "" {
		*newNext = k
	}
	return nil
}

// lockRevoked runs lockRevocation and returns kid's state, or
// storage.ErrNotFound if there is no such key.
func lockRevoked(ctx context.Context, tx querier, kid string) (storage.KeyState, error) {
	rows, err := tx.Query(ctx, lockRevocation, kid)
	if err != nil {
		return "", err
	}
	type locked struct{ kid, state string }
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (locked, error) {
		var l locked
		err := row.Scan(&l.kid, &l.state)
		return l, err
	})
	if err != nil {
		return "", err
	}
	for _, l := range keys {
		if l.kid == kid {
			return storage.KeyState(l.state), nil
		}
	}
	return "", fmt.Errorf("postgres: revoke signing key %q: %w", kid, storage.ErrNotFound)
}

// DeleteRetiredSigningKeys deletes retired keys retired before `before`.
// The state condition keeps active and next keys whatever their
// retired_at says, and a retired key with no retired_at (NULL) is never
// deleted: when it retired is unknown.
func (s *Store) DeleteRetiredSigningKeys(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.db(ctx).Exec(ctx, `DELETE FROM signing_keys WHERE state = 'retired' AND retired_at < $1`, before)
	if err != nil {
		return 0, recordErr("delete retired signing keys", err)
	}
	return int(tag.RowsAffected()), nil
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
