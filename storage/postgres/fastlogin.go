package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/storage"
)

// The login of a returning user (a known identity whose unionid is already
// recorded, or not reported: what linkSame covers) needs no transaction of
// its own. Its user is read first (ReturningUser), the tokens are signed for
// that user, and then one statement (loginWrite) updates the identity and
// inserts the tokens only if the identity still belongs to that user and
// the user is still enabled, locking the identity and then the user (FOR
// SHARE) as linkSame does: a disable or erasure either waits for the
// statement and then deletes its tokens, or commits first and the statement
// writes nothing. Being one statement, it is atomic, and statements of
// concurrent logins go in one pipeline and one commit (stmtBatcher,
// batchstmt.go): a login costs a share of two round trips instead of three of
// its own and a commit. A login the statement did not write (the identity
// moved, the user was disabled or erased meanwhile) takes the transactional
// path, which says why or links anew.

// returningUsers reads, for each identity of the batch (app, openid,
// reported unionid; n its place), the user linkSame would return, without
// writing or locking anything. Identities without such a user are absent.
var returningUsers = `SELECT c.n, u.id, ` + prefixed("u.", userColumns) + `
	FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS c (app_id, open_id, union_id, n)
	JOIN wechat_identities i ON i.app_id = c.app_id AND i.open_id = c.open_id
		AND (c.union_id IS NULL OR i.union_id = c.union_id)
	JOIN users u ON u.id = i.user_id AND u.disabled_at IS NULL`

// ReturningUser returns the enabled user a login of id (its AppID, OpenID
// and reported UnionID) would link to without taking the locked path, or
// storage.ErrNotFound (unknown identity, a new unionid, a disabled user).
// Concurrent calls are read in batches, as access tokens are
// (batchread.go).
func (s *Store) ReturningUser(ctx context.Context, id *storage.WeChatIdentity) (*storage.User, error) {
	if knownDown(ctx) {
		return nil, errKnownUnavailable
	}
	p := &pendingUser{id: id, done: make(chan userResult, 1)}
	r, ok := submit(ctx, &s.users.queue, s.users.run, p, p.done)
	switch {
	case !ok:
		return nil, noteDown(ctx, recordErr("returning user", ctx.Err()))
	case r.err != nil:
		return nil, noteDown(ctx, r.err)
	case r.user == nil:
		return nil, fmt.Errorf("postgres: returning user: %w", storage.ErrNotFound)
	}
	return r.user, nil
}

type pendingUser struct {
	id   *storage.WeChatIdentity
	done chan userResult // buffered: the reader never waits on a caller
}

type userResult struct {
	user *storage.User // nil: none
	err  error
}

type userBatcher struct {
	s     *Store
	queue batchQueue[*pendingUser]
}

func (b *userBatcher) run() {
	b.queue.each(func(ctx context.Context, batch []*pendingUser) {
		users, err := b.read(ctx, batch)
		err = recordErr("returning user", err)
		for i, p := range batch {
			p.done <- userResult{user: users[i], err: err}
		}
		if unavailable(err) {
			for _, p := range b.queue.drain() { // they would each wait out the outage in turn
				p.done <- userResult{err: err}
			}
		}
	})
}

// read answers batch with one statement: each caller gets its own copy.
func (b *userBatcher) read(ctx context.Context, batch []*pendingUser) ([]*storage.User, error) {
	apps, openIDs, unionIDs := make([]string, len(batch)), make([]string, len(batch)), make([]*string, len(batch))
	for i, p := range batch {
		apps[i], openIDs[i] = p.id.AppID, p.id.OpenID
		if p.id.UnionID != "" {
			unionIDs[i] = &p.id.UnionID
		}
	}
	users := make([]*storage.User, len(batch))
	rows, err := timed{q: b.s.pool, d: b.s.timeout}.Query(ctx, returningUsers, apps, openIDs, unionIDs)
	if err != nil {
		return users, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			n  int64
			u  storage.User
			uc userCols
		)
		if err := rows.Scan(append([]any{&n, &u.ID}, uc.dest(&u)...)...); err != nil {
			return make([]*storage.User, len(batch)), err
		}
		if n < 1 || n > int64(len(batch)) {
			return make([]*storage.User, len(batch)), fmt.Errorf("row for identity %d of %d", n, len(batch))
		}
		uc.fill(&u)
		users[n-1] = &u
	}
	return users, rows.Err()
}

// loginWrite is the one statement of a returning login: $1–$6 the
// identity (app, openid, sealed session key, the user read before, the
// reported unionid, the time), then the access token's record columns, then
// (withRefresh) the refresh token's and its access_token_signature. Locks
// are taken as linkSame and erasure take them, the identity first (i, FOR
// UPDATE, only if it still belongs to the user and holds the unionid), then
// the user (u, FOR SHARE, only if enabled: after waiting for a disable, the
// row is read again and found disabled); only then are the identity and the
// tokens written, so a login that is refused writes nothing at all.
func loginWrite(withRefresh bool) string {
	return `WITH i AS (
		SELECT 1 FROM wechat_identities
		WHERE app_id = $1 AND open_id = $2 AND user_id = $4 AND ($5::text IS NULL OR union_id = $5)
		FOR UPDATE
	), u AS (
		SELECT 1 FROM users WHERE id = $4 AND disabled_at IS NULL AND EXISTS (SELECT 1 FROM i) FOR SHARE
	), l AS (
		UPDATE wechat_identities SET session_key = $3, updated_at = $6
		WHERE app_id = $1 AND open_id = $2 AND EXISTS (SELECT 1 FROM u)
		RETURNING 1
	)` + tokenInserts(7, withRefresh, "l") + ` SELECT count(*) FROM l`
}

var (
	loginWriteAccess  = loginWrite(false)
	loginWriteRefresh = loginWrite(true)
)

// deferredKey carries the token writes of a returning login or a refresh
// (deferredWrites, fastrefresh.go) in the context.
type deferredKey struct{}

// deferredWrites collects the token inserts of a returning login or a
// refresh instead of running them: they go in its one statement.
type deferredWrites struct {
	access, refresh []any
	err             error // a write the statement cannot carry
}

// deferWrite records the insert of t's row; false if ctx is not collecting.
func deferWrite(ctx context.Context, t sessionTable, args []any) bool {
	d, ok := ctx.Value(deferredKey{}).(*deferredWrites)
	if !ok {
		return false
	}
	switch {
	case t.insert == accessTokens.insert && d.access == nil:
		d.access = args
	case t.insert == refreshTokens.insert && d.refresh == nil:
		d.refresh = args
	default:
		d.err = fmt.Errorf("postgres: deferred token writes: cannot defer a %s write", t.what)
	}
	return true
}

// ReturningLogin runs issue with the token writes deferred, then writes the
// identity's new session key and the tokens in one statement, if id still
// belongs to user and user is enabled. written is false when it did not
// (nothing was written: the caller takes the transactional path and issues
// again); issue's error is returned as it is.
func (s *Store) ReturningLogin(ctx context.Context, id *storage.WeChatIdentity, user *storage.User, issue func(context.Context) error) (written bool, _ error) {
	if _, inTx := txFrom(ctx); inTx {
		return false, errors.New("postgres: returning login inside a transaction")
	}
	d, err := collectWrites(ctx, issue)
	if err != nil {
		return false, err
	}
	if d.access == nil {
		return false, errors.New("postgres: returning login without an access token")
	}
	args := append([]any{id.AppID, id.OpenID, id.SessionKey, user.ID, nullString(id.UnionID), now()}, d.access...)
	sql := loginWriteAccess
	if d.refresh != nil {
		args, sql = append(args, d.refresh...), loginWriteRefresh
	}
	if knownDown(ctx) {
		return false, errKnownUnavailable
	}
	p := &pendingLogin{key: codeKey{id.AppID, id.OpenID}, stmtCall: newStmtCall[int](sql, args)}
	a, ok := s.logins.submit(ctx, p)
	if !ok {
		return false, noteDown(ctx, recordErr("returning login", ctx.Err()))
	}
	// A statement that failed wrote nothing: the transactional path decides.
	return a.err == nil && !a.failed && a.r == 1, noteDown(ctx, a.err)
}

// pendingLogin is a returning login's statement; its row is the count of
// identities it wrote (1 or 0).
type pendingLogin struct {
	stmtCall[int]
	key codeKey // app and openid: the batch's lock order
}

func newLoginBatcher(s *Store) *stmtBatcher[int, *pendingLogin] {
	return &stmtBatcher[int, *pendingLogin]{
		s: s, what: "returning login",
		order: func(x, y *pendingLogin) int {
			return cmp.Or(cmp.Compare(x.key.appID, y.key.appID), cmp.Compare(x.key.hash, y.key.hash))
		},
		scan: func(row pgx.Row, n *int) error { return row.Scan(n) },
	}
}
