package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// clientColumns is the column list every client query selects, in scanClient
// order; token queries join it under the alias c.
const clientColumns = `c.id, c.secret_hash, c.name, c.grant_types, c.scopes, c.audience, c.redirect_uris,
	c.token_endpoint_auth_method, c.wechat_appid, c.wechat_app_secret, c.created_at, c.updated_at,
	c.allowed_cors_origins, c.post_logout_redirect_uris, c.wechat_login_page,
	c.access_token_ttl_seconds, c.refresh_token_ttl_seconds, c.session_max_age_seconds`

// clientDest returns scan destinations for clientColumns into c.
func clientDest(c *storage.Client) []any {
	return []any{&c.ID, &c.SecretHash, &c.Name, &c.GrantTypes, &c.Scopes, &c.Audience, &c.RedirectURIs,
		&c.TokenEndpointAuthMethod, &c.WeChatAppID, &c.WeChatAppSecret, &c.CreatedAt, &c.UpdatedAt,
		&c.AllowedCORSOrigins, &c.PostLogoutRedirectURIs, &c.WeChatLoginPage,
		seconds{&c.AccessTokenTTL}, seconds{&c.RefreshTokenTTL}, seconds{&c.SessionMaxAge}}
}

// seconds scans an integer column of whole seconds into a duration.
type seconds struct{ d *time.Duration }

func (s seconds) ScanInt64(v pgtype.Int8) error {
	*s.d = time.Duration(v.Int64) * time.Second
	return nil
}

// secs is a duration as the whole seconds the lifetime columns hold.
func secs(d time.Duration) int64 { return int64(d / time.Second) }

// normalizeClient fixes up a scanned client: timestamps in UTC like every
// other time the store hands out.
func normalizeClient(c *storage.Client) {
	c.CreatedAt = c.CreatedAt.UTC()
	c.UpdatedAt = c.UpdatedAt.UTC()
}

// now is the store's clock for the timestamps it sets, cut to what
// timestamptz keeps so the caller's copy equals what is read back.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// CreateClient stores c, setting zero timestamps to now.
func (s *Store) CreateClient(ctx context.Context, c *storage.Client) error {
	t := now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = t
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = t
	}
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO clients (id, secret_hash, name, grant_types, scopes, audience,
		redirect_uris, token_endpoint_auth_method, wechat_appid, wechat_app_secret, created_at, updated_at,
		allowed_cors_origins, post_logout_redirect_uris, wechat_login_page,
		access_token_ttl_seconds, refresh_token_ttl_seconds, session_max_age_seconds)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
		c.ID, nullBytes(c.SecretHash), c.Name, strs(c.GrantTypes), strs(c.Scopes), strs(c.Audience),
		strs(c.RedirectURIs), c.TokenEndpointAuthMethod, c.WeChatAppID, nullBytes(c.WeChatAppSecret),
		c.CreatedAt, c.UpdatedAt, strs(c.AllowedCORSOrigins), strs(c.PostLogoutRedirectURIs), c.WeChatLoginPage,
		secs(c.AccessTokenTTL), secs(c.RefreshTokenTTL), secs(c.SessionMaxAge))
	s.clientsWritten(ctx, c.ID)
	return recordErr("create client", err)
}

// LookupClient returns the client or storage.ErrNotFound, through the
// client cache.
func (s *Store) LookupClient(ctx context.Context, id string) (*storage.Client, error) {
	c, err := s.loadClient(ctx, id)
	if err != nil {
		return nil, recordErr("lookup client", err)
	}
	return c, nil
}

// queryClient reads a client from the database (loadClient is the cached
// read).
func (s *Store) queryClient(ctx context.Context, id string) (*storage.Client, error) {
	var c storage.Client
	err := s.db(ctx).QueryRow(ctx, `SELECT `+clientColumns+` FROM clients c WHERE c.id = $1`, id).Scan(clientDest(&c)...)
	if err != nil {
		return nil, err
	}
	normalizeClient(&c)
	return &c, nil
}

// ListClients returns every client ordered by ID.
func (s *Store) ListClients(ctx context.Context) ([]storage.Client, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+clientColumns+` FROM clients c ORDER BY c.id`)
	if err != nil {
		return nil, recordErr("list clients", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Client, error) {
		var c storage.Client
		err := row.Scan(clientDest(&c)...)
		normalizeClient(&c)
		return c, err
	})
	if err != nil {
		return nil, recordErr("list clients", err)
	}
	return list, nil
}

// UpdateClient replaces every field but ID and CreatedAt, and stamps
// UpdatedAt; c gets both timestamps as stored. A non-zero ifUpdatedAt is
// part of the UPDATE's WHERE, so the check and the write are one statement.
// UpdatedAt always moves forward, even within one clock tick, since it is
// what a later conditional update compares against.
func (s *Store) UpdateClient(ctx context.Context, c *storage.Client, ifUpdatedAt time.Time) error {
	var created, updated time.Time
	err := s.db(ctx).QueryRow(ctx, `UPDATE clients SET secret_hash = $2, name = $3, grant_types = $4, scopes = $5,
		audience = $6, redirect_uris = $7, token_endpoint_auth_method = $8, wechat_appid = $9,
		wechat_app_secret = $10, updated_at = GREATEST($11, updated_at + interval '1 microsecond'),
		allowed_cors_origins = $12, post_logout_redirect_uris = $14, wechat_login_page = $15,
		access_token_ttl_seconds = $16, refresh_token_ttl_seconds = $17, session_max_age_seconds = $18
		WHERE id = $1 AND ($13::timestamptz IS NULL OR updated_at = $13)
		RETURNING created_at, updated_at`,
		c.ID, nullBytes(c.SecretHash), c.Name, strs(c.GrantTypes), strs(c.Scopes), strs(c.Audience),
		strs(c.RedirectURIs), c.TokenEndpointAuthMethod, c.WeChatAppID, nullBytes(c.WeChatAppSecret),
		now(), strs(c.AllowedCORSOrigins), nullTime(ifUpdatedAt), strs(c.PostLogoutRedirectURIs),
		c.WeChatLoginPage, secs(c.AccessTokenTTL), secs(c.RefreshTokenTTL), secs(c.SessionMaxAge)).Scan(&created, &updated)
	// Whatever the outcome: an error may come after the row changed.
	s.clientsWritten(ctx, c.ID)
	if errors.Is(err, pgx.ErrNoRows) && !ifUpdatedAt.IsZero() {
		// No row matched: absent, or changed since the caller read it.
		var exists bool
		err = s.db(ctx).QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clients WHERE id = $1)`, c.ID).Scan(&exists)
		if err == nil && exists {
			return storage.ErrStale
		}
		if err == nil {
			err = pgx.ErrNoRows
		}
	}
	if err != nil {
		return recordErr("update client", err)
	}
	c.CreatedAt, c.UpdatedAt = created.UTC(), updated.UTC()
	return nil
}

// DeleteClient removes the client and, by cascade, every token issued to it.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	tag, err := s.db(ctx).Exec(ctx, `DELETE FROM clients WHERE id = $1`, id)
	s.clientsWritten(ctx, id)
	if err != nil {
		return recordErr("delete client", err)
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// CORSOriginAllowed reports whether origin is registered on client
// clientID, or on any client when clientID is empty. The array containment
// is written as 00007_cors.sql's GIN index expects.
func (s *Store) CORSOriginAllowed(ctx context.Context, origin, clientID string) (bool, error) {
	var ok bool
	err := s.db(ctx).QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clients
		WHERE allowed_cors_origins @> ARRAY[$1::text] AND ($2 = '' OR id = $2))`, origin, clientID).Scan(&ok)
	if err != nil {
		return false, recordErr("cors origin", err)
	}
	return ok, nil
}

// GetClient is fosite's view of LookupClient: an *storage.OAuthClient, or
// fosite.ErrNotFound. The client is the caller's own copy, so fosite's
// request objects may hold and change it.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := s.loadClient(ctx, id)
	if err != nil {
		return nil, fositeErr("get client", err)
	}
	return storage.NewOAuthClient(c), nil
}

// strs keeps a nil slice from being sent as NULL into a NOT NULL array
// column.
func strs(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// nullBytes stores an empty byte slice as NULL, so "none registered" reads
// back as nil whichever way the caller spelled it.
func nullBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
