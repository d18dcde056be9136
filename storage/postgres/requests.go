package postgres

import (
	"context"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// sessionTable is one table of storage.RequestRecord rows with its
// statements, built once at init from constant table names: no statement is
// ever built from input.
type sessionTable struct {
	what   string // names the kind of row in error messages
	insert string
	get    string
	// getMany is get for many signatures ($1, an array; batchread.go).
	getMany string
	delete  string
}

const recordColumns = `signature, request_id, requested_at, client_id, requested_scopes, granted_scopes,
	requested_audience, granted_audience, form, session, subject, expires_at`

// newSessionTable builds the statements for table. active is the SQL
// expression (over the table alias t) that get reports as the row's active
// flag; it may use $2 and up, bound from get's args. extraColumns are
// inserted after the record columns (bound from $13 on).
func newSessionTable(what, table, active string, extraColumns ...string) sessionTable {
	cols, vals := recordColumns, "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12"
	for i, c := range extraColumns {
		cols += ", " + c
		vals += ", $" + strconv.Itoa(13+i)
	}
	// The client comes in the same round trip: every read of a token needs
	// it, and a second query per introspection or refresh would double the
	// database work of the hottest paths.
	get := `SELECT t.signature, t.request_id, t.requested_at, t.client_id, t.requested_scopes, t.granted_scopes,
			t.requested_audience, t.granted_audience, t.form, t.session, t.subject, t.expires_at, ` + active + `,
			` + clientColumns + `
			FROM ` + table + ` t JOIN clients c ON c.id = t.client_id WHERE t.signature `
	return sessionTable{
		what:    what,
		insert:  `INSERT INTO ` + table + ` (` + cols + `) VALUES (` + vals + `)`,
		get:     get + `= $1`,
		getMany: get + `= ANY($1)`,
		delete:  `DELETE FROM ` + table + ` WHERE signature = $1`,
	}
}

// refreshActive is a refresh token's active flag as callers see it: active,
// or rotated after the grace cutoff $2 with its grace unused. IS TRUE turns
// the NULLs of a NULL cutoff (no grace period) or of a token deactivated
// before deactivated_at existed into false.
const refreshActive = `(t.active OR (NOT t.grace_used AND t.deactivated_at > $2)) IS TRUE`

// Tables without an active column read as always active.
var (
	accessTokens   = newSessionTable("access token", "oauth2_access_tokens", "true")
	refreshTokens  = newSessionTable("refresh token", "oauth2_refresh_tokens", refreshActive, "access_token_signature")
	authorizeCodes = newSessionTable("authorize code", "oauth2_authorization_codes", "t.active")
	pkceRequests   = newSessionTable("pkce request", "oauth2_pkce_requests", "true")
	oidcSessions   = newSessionTable("openid connect session", "oauth2_oidc_sessions", "true")
)

// create flattens r under key and inserts it; expiry picks which of the
// session's expiries the row carries (the janitor deletes by it).
func (s *Store) create(ctx context.Context, t sessionTable, key string, r fosite.Requester, expiry fosite.TokenType, extra ...any) error {
	args, err := recordArgs(key, r, expiry, extra...)
	if err != nil {
		return err
	}
	if st, inTx := txFrom(ctx); inTx {
		// Nothing reads the insert's result before the commit, which
		// reports its failure (pipetx.go).
		st.tx.queue("create "+t.what, t.insert, args...)
		return nil
	}
	if deferWrite(ctx, t, args) { // a returning login's (fastlogin.go)
		return nil
	}
	_, err = s.db(ctx).Exec(ctx, t.insert, args...)
	return fositeErr("create "+t.what, err)
}

// recordArgs flattens r under key into the insert's arguments.
func recordArgs(key string, r fosite.Requester, expiry fosite.TokenType, extra ...any) ([]any, error) {
	rec, err := storage.NewRequestRecord(key, r, expiry)
	if err != nil {
		return nil, err
	}
	// strs although NewRequestRecord promises non-nil slices: its nonNil
	// turns an empty non-nil slice (fosite.NewRequest's audiences) into nil.
	return append([]any{rec.Signature, rec.RequestID, rec.RequestedAt, rec.ClientID,
		strs(rec.RequestedScopes), strs(rec.GrantedScopes), strs(rec.RequestedAudience), strs(rec.GrantedAudience),
		rec.Form, rec.Session, rec.Subject, nullTime(rec.ExpiresAt)}, extra...), nil
}

// get loads the row under key and rebuilds its request, decoding the session
// into session. active is false for a deactivated row; the request is
// returned either way, since fosite needs it to revoke a reused token's
// chain. args are bound after key, for the table's active expression.
func (s *Store) get(ctx context.Context, t sessionTable, key string, session fosite.Session, args ...any) (_ *fosite.Request, active bool, _ error) {
	row, err := s.scan(ctx, t, key, args...)
	if err != nil {
		return nil, false, err
	}
	// Decoding happens here, after the connection was given back.
	rec := &row.rec
	rec.RequestedAt = rec.RequestedAt.UTC()
	rec.ExpiresAt = zeroTime(row.expires)
	normalizeClient(&row.client)
	req, err := rec.Requester(ctx, joinedClient{ClientManager: s, client: storage.NewOAuthClient(&row.client)}, session)
	if err != nil {
		return nil, false, err
	}
	return req, row.active, nil
}

// scan reads the row under key: in a batch outside a transaction
// (batchread.go), else on its own.
func (s *Store) scan(ctx context.Context, t sessionTable, key string, args ...any) (*scannedToken, error) {
	if !storableKey(key) {
		return nil, fosite.ErrNotFound
	}
	if _, inTx := txFrom(ctx); !inTx {
		switch t.get {
		case accessTokens.get:
			return s.accessReader.get(ctx, key)
		case refreshTokens.get:
			return s.refreshReader.get(ctx, key)
		case authorizeCodes.get:
			return s.codeReader.get(ctx, key)
		case pkceRequests.get:
			return s.pkceReader.get(ctx, key)
		case oidcSessions.get:
			return s.oidcReader.get(ctx, key)
		}
	}
	row := &scannedToken{}
	if err := s.db(ctx).QueryRow(ctx, t.get, append([]any{key}, args...)...).Scan(row.dest()...); err != nil {
		return nil, fositeErr("get "+t.what, err)
	}
	return row, nil
}

// storableKey reports whether a row can have key: PostgreSQL's text holds
// neither a NUL byte nor invalid UTF-8, and refuses a statement that sends
// one. Keys derive from what clients send (a code's or token's signature),
// so such a key is simply not found, and never fails a batch it would share
// with other requests' keys.
func storableKey(key string) bool {
	return utf8.ValidString(key) && strings.IndexByte(key, 0) < 0
}

// joinedClient hands RequestRecord.Requester the client the row was joined
// with, instead of letting it query for it again.
type joinedClient struct {
	fosite.ClientManager
	client fosite.Client
}

func (j joinedClient) GetClient(context.Context, string) (fosite.Client, error) { return j.client, nil }

// remove deletes the row under key; an unknown key is not an error. (The
// provider leaves a code's PKCE request and OpenID Connect session to
// expire with the code: provider/refresh_reuse.go.)
func (s *Store) remove(ctx context.Context, t sessionTable, key string) error {
	if !storableKey(key) {
		return nil
	}
	_, err := s.db(ctx).Exec(ctx, t.delete, key)
	return fositeErr("delete "+t.what, err)
}
