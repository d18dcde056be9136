package postgres

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/storage"
)

// ListUsers returns at most limit users matching f, newest first by
// (created_at, id), strictly after the cursor when one is given. Each filter
// is an indexed EXISTS on the users walked in created_at order.
func (s *Store) ListUsers(ctx context.Context, f storage.UserFilter, after *storage.UserCursor, limit int) ([]storage.User, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.OpenID != "" {
		cond := `i.open_id = ` + arg(f.OpenID)
		if f.AppID != "" {
			cond += ` AND i.app_id = ` + arg(f.AppID)
		}
		where = append(where, `EXISTS (SELECT 1 FROM wechat_identities i WHERE i.user_id = u.id AND `+cond+`)`)
	}
	if f.UnionID != "" {
		p := arg(f.UnionID)
		where = append(where, `(EXISTS (SELECT 1 FROM wechat_identities i WHERE i.user_id = u.id AND i.union_id = `+p+`)
			OR EXISTS (SELECT 1 FROM wechat_unions w WHERE w.user_id = u.id AND w.union_id = `+p+`))`)
	}
	if f.Phone != "" {
		where = append(where, `u.phone_number = `+arg(f.Phone))
	}
	if f.ClientID != "" {
		p := arg(f.ClientID)
		where = append(where, `(EXISTS (SELECT 1 FROM clients c JOIN wechat_identities i ON i.app_id = c.wechat_appid
				WHERE c.id = `+p+` AND c.wechat_appid <> '' AND i.user_id = u.id)
			OR EXISTS (SELECT 1 FROM oauth2_refresh_tokens r WHERE r.subject = u.id AND r.client_id = `+p+`)
			OR EXISTS (SELECT 1 FROM oauth2_access_tokens a WHERE a.subject = u.id AND a.client_id = `+p+`))`)
	}
	if !f.CreatedAfter.IsZero() {
		where = append(where, `u.created_at >= `+arg(f.CreatedAfter))
	}
	if !f.CreatedBefore.IsZero() {
		where = append(where, `u.created_at < `+arg(f.CreatedBefore))
	}
	if after != nil {
		where = append(where, `(u.created_at, u.id) < (`+arg(after.CreatedAt)+`, `+arg(after.ID)+`)`)
	}
	q := `SELECT u.id, ` + prefixed("u.", userColumns) + ` FROM users u`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY u.created_at DESC, u.id DESC LIMIT ` + arg(limit)
	rows, err := s.db(ctx).Query(ctx, q, args...)
	if err != nil {
		return nil, recordErr("list users", err)
	}
	users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.User, error) {
		var (
			u  storage.User
			uc userCols
		)
		err := row.Scan(append([]any{&u.ID}, uc.dest(&u)...)...)
		uc.fill(&u)
		return u, err
	})
	if err != nil {
		return nil, recordErr("list users", err)
	}
	return users, nil
}

// prefixed qualifies each column of a comma-separated list with p.
func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// UserDetails returns the user, their identities (never a session key),
// last login and live refresh-token chains.
func (s *Store) UserDetails(ctx context.Context, id string) (*storage.UserDetails, error) {
	var d *storage.UserDetails
	err := s.inTx(ctx, func(ctx context.Context, tx querier) error {
		u, err := getUser(ctx, tx, id, "")
		if err != nil {
			return err
		}
		d = &storage.UserDetails{User: *u}
		rows, err := tx.Query(ctx, `SELECT app_id, open_id, coalesce(union_id, ''), created_at, updated_at
			FROM wechat_identities WHERE user_id = $1 ORDER BY app_id, open_id`, id)
		if err != nil {
			return err
		}
		d.Identities, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.WeChatIdentity, error) {
			wi := storage.WeChatIdentity{UserID: id}
			err := row.Scan(&wi.AppID, &wi.OpenID, &wi.UnionID, &wi.CreatedAt, &wi.UpdatedAt)
			wi.CreatedAt, wi.UpdatedAt = wi.CreatedAt.UTC(), wi.UpdatedAt.UTC()
			return wi, err
		})
		if err != nil {
			return err
		}
		var last *time.Time
		err = tx.QueryRow(ctx, `SELECT greatest(
				(SELECT max(updated_at) FROM wechat_identities WHERE user_id = $1),
				(SELECT max(auth_time) FROM browser_sessions WHERE user_id = $1))`, id).Scan(&last)
		if err != nil {
			return err
		}
		d.LastLoginAt = derefTime(last)
		rows, err = tx.Query(ctx, `SELECT * FROM (
				SELECT DISTINCT ON (request_id) request_id, client_id, granted_scopes, requested_at, expires_at
				FROM oauth2_refresh_tokens
				WHERE subject = $1 AND active AND (expires_at IS NULL OR expires_at > $2)
				ORDER BY request_id, requested_at DESC
			) c ORDER BY requested_at DESC, request_id`, id, s.clockNow())
		if err != nil {
			return err
		}
		d.Chains, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.TokenChain, error) {
			var (
				c   storage.TokenChain
				exp *time.Time
			)
			err := row.Scan(&c.RequestID, &c.ClientID, &c.Scopes, &c.IssuedAt, &exp)
			c.IssuedAt, c.ExpiresAt = c.IssuedAt.UTC(), derefTime(exp)
			return c, err
		})
		return err
	})
	if err != nil {
		return nil, recordErr("user details", err)
	}
	return d, nil
}

// forgetUser deletes every token, code and browser record naming the user
// as subject. Run after the user row is locked against writers: each DELETE
// takes a new snapshot (READ COMMITTED), so it sees the tokens of the logins
// and refreshes the lock waited for.
//
// Refresh tokens go before access tokens: a rotation and a reuse revocation
// lock them in that order, and the same order keeps them from deadlocking.
var forgetUser = []string{
	`DELETE FROM oauth2_refresh_tokens WHERE subject = $1`,
	`DELETE FROM oauth2_access_tokens WHERE subject = $1`,
	`DELETE FROM oauth2_authorization_codes WHERE subject = $1`,
	`DELETE FROM oauth2_pkce_requests WHERE subject = $1`,
	`DELETE FROM oauth2_oidc_sessions WHERE subject = $1`,
	`DELETE FROM login_tickets WHERE user_id = $1`,
	`DELETE FROM browser_sessions WHERE user_id = $1`,
}

// SetUserDisabled disables (deleting everything the user could still use)
// or enables the user. The UPDATE takes the user's row lock, which waits
// for every login and refresh of the user in flight (they hold it FOR
// SHARE until they commit); the deletions after it see their tokens.
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool) (*storage.User, error) {
	var u *storage.User
	err := s.inTx(ctx, func(ctx context.Context, tx querier) error {
		stamp := now()
		var uc userCols
		u = &storage.User{ID: id}
		err := tx.QueryRow(ctx, `UPDATE users SET updated_at = $2,
				disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, $2) END
			WHERE id = $1 RETURNING `+userColumns, id, stamp, disabled).Scan(uc.dest(u)...)
		if err != nil {
			return err
		}
		uc.fill(u)
		if !disabled {
			return nil
		}
		for _, q := range forgetUser {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, recordErr("set user disabled", err)
	}
	return u, nil
}

// SetUserProfile applies p and stamps the profile's update time.
func (s *Store) SetUserProfile(ctx context.Context, id string, p storage.ProfilePatch) (*storage.User, error) {
	var (
		u  = &storage.User{ID: id}
		uc userCols
	)
	err := s.db(ctx).QueryRow(ctx, `UPDATE users SET
			nickname = CASE WHEN $2 THEN nullif($3, '') ELSE nickname END,
			picture = CASE WHEN $4 THEN nullif($5, '') ELSE picture END,
			profile_updated_at = $6, updated_at = $6
		WHERE id = $1 RETURNING `+userColumns,
		id, p.Nickname != nil, deref(p.Nickname), p.Picture != nil, deref(p.Picture), now()).Scan(uc.dest(u)...)
	if err != nil {
		return nil, recordErr("set user profile", err)
	}
	uc.fill(u)
	return u, nil
}

// EraseUser deletes the user and every row naming them in one transaction.
// The row locks (FOR UPDATE: the identities, then the user) wait for logins
// and refreshes in flight, as disabling does; deleting the user cascades to identities, unionids,
// tickets and browser sessions.
func (s *Store) EraseUser(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(ctx context.Context, tx querier) error {
		// A login locks its identity row, then the user (FOR SHARE): lock
		// in the same order, or an erasure and a login deadlock; the
		// identities in the order a batch of returning logins takes them
		// (fastlogin.go).
		if _, err := tx.Exec(ctx, `SELECT 1 FROM wechat_identities WHERE user_id = $1
			ORDER BY app_id, open_id FOR UPDATE`, id); err != nil {
			return err
		}
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, id).Scan(&one); err != nil {
			return err
		}
		for _, q := range forgetUser {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return recordErr("erase user", err)
	}
	return nil
}
