package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/storage"
)

// How LinkWeChatIdentity stays race-free, with or without the caller's
// transaction:
//
//   - The common login, a known identity whose unionid is already recorded
//     (or not reported), is one UPDATE (linkSame): atomic on its own, and it
//     takes no lock but the identity's row lock.
//   - Everything else (a new identity, or one gaining a unionid) takes
//     transaction-level advisory locks on the identity and then on the
//     unionid, always in that order, and only then reads and writes. So the
//     links of one identity, and the links of one unionid across apps, run
//     one at a time: each sees what the previous one committed (READ
//     COMMITTED takes a new snapshot per statement) and there is no
//     check-then-insert window. The locks last until the transaction ends,
//     which is what makes the caller's transaction safe: a second login
//     waits until the first one's tokens and user are committed or rolled
//     back, never sees a user that may yet vanish, and never creates a
//     second one.
//   - That work runs in a transaction of its own, or in a savepoint of the
//     caller's, so it is atomic either way and a later failure of the
//     caller rolls it back with the caller's tokens.
//   - No deadlock between links: advisory locks are taken identity first,
//     the unionid's second, and no link waits for an identity's advisory
//     lock while holding a unionid's. linkSame holds a row lock but waits
//     for nothing after taking it.
//   - The primary keys of wechat_identities and wechat_unions remain the
//     backstop: a hash collision of two lock keys only makes two unrelated
//     logins wait for each other, and a writer that skipped the locks would
//     get storage.ErrAlreadyExists, never a second user.
//
// wechat_unions, not wechat_identities.union_id, says which user a unionid
// joins: the first user recorded with it. An identity that gains a unionid
// another user already holds keeps its own user (its tokens name it), so
// several identities may carry one unionid with different users, and only
// the table can say which of them a new identity joins.

// linkColumns is what the link statements return: the identity, then its
// user.
const linkColumns = `l.union_id, l.user_id, l.created_at, l.updated_at,
	u.phone_number, u.nickname, u.picture, u.profile_updated_at, u.disabled_at, u.created_at, u.updated_at`

// linkSame overwrites the session key of a known identity whose stored
// unionid is the reported one, or when none is reported (an answer without
// unionid never clears it). Any other case matches no row and takes the
// locked path. The user is read in the same statement: it exists before any
// identity referencing it, so the statement's snapshot holds it. A disabled
// user's identity is not touched (the locked path then says why), and the
// user is read-locked (FOR SHARE) until the caller's transaction ends, so
// disabling, which updates the row, waits for this login's tokens and
// deletes them. If a disable committed between the UPDATE's snapshot and
// the lock, the locked row reads disabled and the caller refuses the login.
const linkSame = `WITH l AS (
		UPDATE wechat_identities SET session_key = $3, updated_at = $5
		WHERE app_id = $1 AND open_id = $2 AND ($4::text IS NULL OR union_id = $4)
			AND NOT EXISTS (SELECT 1 FROM users d WHERE d.id = user_id AND d.disabled_at IS NOT NULL)
		RETURNING union_id, user_id, created_at, updated_at
	)
	SELECT ` + linkColumns + ` FROM l JOIN users u ON u.id = l.user_id FOR SHARE OF u`

// linkKnown is linkSame for any known identity, run under the locks: a
// reported unionid replaces the stored one and is offered to wechat_unions,
// where it becomes this identity's user's if nobody holds it yet, so the
// person's first login in another app joins this user. Only the reported
// unionid, whose lock is held, is offered: a stored one was offered when it
// was stored.
const linkKnown = `WITH l AS (
		UPDATE wechat_identities
		SET session_key = $3, union_id = COALESCE($4, union_id), updated_at = $5
		WHERE app_id = $1 AND open_id = $2
		RETURNING union_id, user_id, created_at, updated_at
	), rec AS (
		INSERT INTO wechat_unions (union_id, user_id, created_at)
		SELECT $4, user_id, $5 FROM l WHERE $4::text IS NOT NULL
		ON CONFLICT (union_id) DO NOTHING
	)
	SELECT ` + linkColumns + ` FROM l JOIN users u ON u.id = l.user_id FOR SHARE OF u`

// identityUserDisabled read-locks the user of a known identity and says
// whether they are disabled; no row for an unknown identity.
const identityUserDisabled = `SELECT u.disabled_at IS NOT NULL FROM wechat_identities i
	JOIN users u ON u.id = i.user_id WHERE i.app_id = $1 AND i.open_id = $2 FOR SHARE OF u`

// lockKey takes a transaction-level advisory lock on name. The names of
// identities and unionids carry different prefixes, so they never share a
// key but by a 64-bit hash collision.
const lockKey = `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`

// LinkWeChatIdentity records a login and returns the identity's user,
// filling in id's UserID, UnionID (as stored) and timestamps. See the
// comment above linkColumns for why it is race-free.
func (s *Store) LinkWeChatIdentity(ctx context.Context, id *storage.WeChatIdentity, newUserID string) (*storage.User, error) {
	stamp := now()
	args := []any{id.AppID, id.OpenID, id.SessionKey, nullString(id.UnionID), stamp}
	u, err := scanLink(s.db(ctx).QueryRow(ctx, linkSame, args...), id)
	if err == nil && u.Disabled() {
		return nil, fmt.Errorf("postgres: link wechat identity: %w", storage.ErrUserDisabled)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return u, recordErr("link wechat identity", err)
	}
	// inTx pins READ COMMITTED: after waiting for the locks below, the
	// queries must see what the lock holder committed (a REPEATABLE READ
	// snapshot, taken at the first lock statement, would not, and the insert
	// would then collide).
	err = s.inTx(ctx, func(ctx context.Context, tx querier) error {
		if _, err := tx.Exec(ctx, lockKey, "wechat identity "+id.AppID+" "+id.OpenID); err != nil {
			return err
		}
		if id.UnionID != "" {
			if _, err := tx.Exec(ctx, lockKey, "wechat union "+id.UnionID); err != nil {
				return err
			}
		}
		var disabled bool
		switch err := tx.QueryRow(ctx, identityUserDisabled, id.AppID, id.OpenID).Scan(&disabled); {
		case err == nil && disabled:
			return storage.ErrUserDisabled
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		u, err = scanLink(tx.QueryRow(ctx, linkKnown, args...), id)
		if errors.Is(err, pgx.ErrNoRows) {
			u, err = linkNew(ctx, tx, id, newUserID, stamp)
		}
		return err
	})
	if err != nil {
		return nil, recordErr("link wechat identity", err)
	}
	return u, nil
}

// linkNew inserts an identity not known yet, under the locks: it joins the
// user holding its unionid, or gets a new user (who then holds the
// unionid).
func linkNew(ctx context.Context, tx querier, id *storage.WeChatIdentity, newUserID string, stamp time.Time) (*storage.User, error) {
	var u *storage.User
	if id.UnionID != "" {
		var holder string
		err := tx.QueryRow(ctx, `SELECT user_id FROM wechat_unions WHERE union_id = $1`, id.UnionID).Scan(&holder)
		switch {
		case err == nil:
			u, err = getUser(ctx, tx, holder, " FOR SHARE")
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				// Erased since (its unionid went with it): a new user.
				u = nil
			case err != nil:
				return nil, err
			case u.Disabled():
				return nil, storage.ErrUserDisabled
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, err
		}
	}
	if u == nil {
		u = &storage.User{ID: newUserID, CreatedAt: stamp, UpdatedAt: stamp}
		_, err := tx.Exec(ctx, `INSERT INTO users (id, created_at, updated_at) VALUES ($1, $2, $2)`, newUserID, stamp)
		if err != nil {
			return nil, err
		}
		if id.UnionID != "" {
			_, err := tx.Exec(ctx, `INSERT INTO wechat_unions (union_id, user_id, created_at) VALUES ($1, $2, $3)`,
				id.UnionID, newUserID, stamp)
			if err != nil {
				return nil, err
			}
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO wechat_identities
		(app_id, open_id, union_id, user_id, session_key, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6)`,
		id.AppID, id.OpenID, nullString(id.UnionID), u.ID, id.SessionKey, stamp)
	if err != nil {
		return nil, err
	}
	id.UserID, id.CreatedAt, id.UpdatedAt = u.ID, stamp, stamp
	return u, nil
}

// scanLink reads a row of linkColumns into id and a new user.
func scanLink(row pgx.Row, id *storage.WeChatIdentity) (*storage.User, error) {
	var (
		u       storage.User
		unionID *string
		uc      userCols
	)
	err := row.Scan(append([]any{&unionID, &u.ID, &id.CreatedAt, &id.UpdatedAt}, uc.dest(&u)...)...)
	if err != nil {
		return nil, err
	}
	id.UnionID, id.UserID = deref(unionID), u.ID
	id.CreatedAt, id.UpdatedAt = id.CreatedAt.UTC(), id.UpdatedAt.UTC()
	uc.fill(&u)
	return &u, nil
}

// GetUser returns the user or storage.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (*storage.User, error) {
	u, err := getUser(ctx, s.db(ctx), id, "")
	if err != nil {
		return nil, recordErr("get user", err)
	}
	return u, nil
}

// getUser reads a user through q, untranslated; lock is "" or a locking
// clause (" FOR SHARE").
func getUser(ctx context.Context, q querier, id, lock string) (*storage.User, error) {
	var (
		u  = storage.User{ID: id}
		uc userCols
	)
	err := q.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`+lock, id).Scan(uc.dest(&u)...)
	if err != nil {
		return nil, err
	}
	uc.fill(&u)
	return &u, nil
}

// userColumns are the users columns userCols scans, in order (after the
// id, which callers read themselves when they need it).
const userColumns = `phone_number, nickname, picture, profile_updated_at, disabled_at, created_at, updated_at`

// userCols holds the nullable columns of userColumns while scanning.
type userCols struct {
	phone, nickname, picture *string
	profileAt, disabledAt    *time.Time
}

// dest returns the scan destinations of userColumns, into u and c.
func (c *userCols) dest(u *storage.User) []any {
	return []any{&c.phone, &c.nickname, &c.picture, &c.profileAt, &c.disabledAt, &u.CreatedAt, &u.UpdatedAt}
}

// fill moves the scanned nullable columns into u and normalises times.
func (c *userCols) fill(u *storage.User) {
	u.PhoneNumber, u.Nickname, u.Picture = deref(c.phone), deref(c.nickname), deref(c.picture)
	u.ProfileUpdatedAt, u.DisabledAt = derefTime(c.profileAt), derefTime(c.disabledAt)
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
}

// derefTime is the zero time for NULL, and UTC otherwise.
func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// GetWeChatIdentity returns the identity or storage.ErrNotFound.
func (s *Store) GetWeChatIdentity(ctx context.Context, appID, openID string) (*storage.WeChatIdentity, error) {
	var (
		id      = storage.WeChatIdentity{AppID: appID, OpenID: openID}
		unionID *string
	)
	err := s.db(ctx).QueryRow(ctx, `SELECT union_id, user_id, session_key, created_at, updated_at
		FROM wechat_identities WHERE app_id = $1 AND open_id = $2`, appID, openID).
		Scan(&unionID, &id.UserID, &id.SessionKey, &id.CreatedAt, &id.UpdatedAt)
	if err != nil {
		return nil, recordErr("get wechat identity", err)
	}
	id.UnionID = deref(unionID)
	id.CreatedAt, id.UpdatedAt = id.CreatedAt.UTC(), id.UpdatedAt.UTC()
	return &id, nil
}

// UserWeChatIdentity returns the user's identity in appID, or
// storage.ErrNotFound.
func (s *Store) UserWeChatIdentity(ctx context.Context, userID, appID string) (*storage.WeChatIdentity, error) {
	var (
		id      = storage.WeChatIdentity{AppID: appID, UserID: userID}
		unionID *string
	)
	err := s.db(ctx).QueryRow(ctx, `SELECT open_id, union_id, session_key, created_at, updated_at
		FROM wechat_identities WHERE user_id = $1 AND app_id = $2 ORDER BY updated_at DESC LIMIT 1`, userID, appID).
		Scan(&id.OpenID, &unionID, &id.SessionKey, &id.CreatedAt, &id.UpdatedAt)
	if err != nil {
		return nil, recordErr("get the user's wechat identity", err)
	}
	id.UnionID = deref(unionID)
	id.CreatedAt, id.UpdatedAt = id.CreatedAt.UTC(), id.UpdatedAt.UTC()
	return &id, nil
}

// SetUserPhone stores a verified phone number (an empty one clears it);
// storage.ErrNotFound if there is no such user.
func (s *Store) SetUserPhone(ctx context.Context, userID, phone string) error {
	tag, err := s.db(ctx).Exec(ctx, `UPDATE users SET phone_number = $2, updated_at = $3 WHERE id = $1`,
		userID, nullString(phone), now())
	if err != nil {
		return recordErr("set user phone", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: set user phone: %w", storage.ErrNotFound)
	}
	return nil
}

// nullString stores "" as NULL, for optional text columns.
func nullString(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

// deref is the inverse of nullString.
func deref(v *string) string {
	if v == nil {
		return ""
	}
	return *v
}
