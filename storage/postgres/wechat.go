package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// claimCode records a wx.login code, taking over an expired row of the same
// code rather than deleting it first, like setJTI. Concurrent claims of one
// code serialize on the primary key: the first inserts, the others wait for
// it and then find an unexpired row, which the WHERE leaves alone (zero
// rows).
//
// Nothing else deletes expired codes yet, so each claim also drops a few
// expired rows of other codes: the table stays near the number of codes
// claimed in the last few minutes. SKIP LOCKED keeps concurrent claims from
// queueing on the same old rows, and the claimed code is excluded because
// one statement must not touch a row twice.
const claimCode = `WITH expired AS (
		DELETE FROM wechat_codes WHERE (app_id, code_hash) IN (
			SELECT app_id, code_hash FROM wechat_codes
			WHERE expires_at <= $4 AND NOT (app_id = $1 AND code_hash = $2)
			ORDER BY expires_at LIMIT 8
			FOR UPDATE SKIP LOCKED)
	)
	INSERT INTO wechat_codes (app_id, code_hash, expires_at) VALUES ($1, $2, $3)
	ON CONFLICT (app_id, code_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at
	WHERE wechat_codes.expires_at <= $4`

// ClaimWeChatCode records codeHash until expiresAt; storage.ErrAlreadyExists
// if it is recorded and unexpired.
func (s *Store) ClaimWeChatCode(ctx context.Context, appID, codeHash string, expiresAt time.Time) error {
	tag, err := s.db(ctx).Exec(ctx, claimCode, appID, codeHash, expiresAt, time.Now())
	if err != nil {
		return recordErr("claim wechat code", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: claim wechat code: %w", storage.ErrAlreadyExists)
	}
	return nil
}

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
