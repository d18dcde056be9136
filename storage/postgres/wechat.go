package postgres

import (
	"context"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// GetWeChatToken returns appID's token, or storage.ErrNotFound when none was
// saved yet (a row holding only a lease has no token).
func (s *Store) GetWeChatToken(ctx context.Context, appID string) (*storage.WeChatToken, error) {
	t := storage.WeChatToken{AppID: appID}
	var expires *time.Time
	err := s.db(ctx).QueryRow(ctx, `SELECT token, expires_at, updated_at FROM wechat_tokens
		WHERE app_id = $1 AND token IS NOT NULL`, appID).Scan(&t.Token, &expires, &t.UpdatedAt)
	if err != nil {
		return nil, recordErr("get wechat token", err)
	}
	t.ExpiresAt, t.UpdatedAt = zeroTime(expires), t.UpdatedAt.UTC()
	return &t, nil
}

// leaseToken grants a refresh lease by a conditional upsert: the row is
// created with the lease if absent, and otherwise its lease is replaced only
// if it has run out. Concurrent leases serialize on the primary key for the
// length of this statement only; the loser re-reads the winner's lease in the
// WHERE and matches nothing. No lock is held while the winner calls WeChat.
const leaseToken = `INSERT INTO wechat_tokens (app_id, lease_until, updated_at) VALUES ($1, $3, $2)
	ON CONFLICT (app_id) DO UPDATE SET lease_until = EXCLUDED.lease_until
	WHERE wechat_tokens.lease_until IS NULL OR wechat_tokens.lease_until <= $2`

// LeaseWeChatTokenRefresh grants the caller the refresh of appID's token
// until `until`, unless another lease runs past now.
func (s *Store) LeaseWeChatTokenRefresh(ctx context.Context, appID string, now, until time.Time) (bool, error) {
	tag, err := s.db(ctx).Exec(ctx, leaseToken, appID, now, until)
	if err != nil {
		return false, recordErr("lease wechat token refresh", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SaveWeChatToken stores t (setting its UpdatedAt) and releases any lease on
// its appid, so the next refresh need not wait for the lease to run out.
func (s *Store) SaveWeChatToken(ctx context.Context, t *storage.WeChatToken) error {
	t.UpdatedAt = now()
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO wechat_tokens (app_id, token, expires_at, lease_until, updated_at)
		VALUES ($1, $2, $3, NULL, $4)
		ON CONFLICT (app_id) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at,
			lease_until = NULL, updated_at = EXCLUDED.updated_at`,
		t.AppID, t.Token, nullTime(t.ExpiresAt), t.UpdatedAt)
	return recordErr("save wechat token", err)
}
