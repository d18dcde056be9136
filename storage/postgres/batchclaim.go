package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// wx.login codes are claimed in batches, as access tokens are written
// (batchwrite.go): claims that arrive while a batch is being written go
// together in the next one, one statement, one round trip and one commit
// for all of them; an idle server claims each code at once. The rule of a
// claim is unchanged: each caller returns only once its own claim is
// committed, so WeChat is asked about a code only after the claim that
// refuses its replays is durable, and every claim of one code but the first
// gets storage.ErrAlreadyExists, whether the others are in the same batch,
// in a concurrent one or in another process.

// claimCodes claims the codes of unnest($1, $2, $3), taking over expired
// rows of the same codes, and returns the codes it claimed. Codes already
// claimed and unexpired are left alone (the WHERE matches nothing) and are
// absent from the result; concurrent batches with a common code serialize
// on its primary key, the later one finding the earlier one's row.
//
// Nothing else deletes expired codes yet, so each claim also drops up to 8
// expired rows of other codes ($5: 8 per claim of the batch): the table
// stays near the number of codes claimed in the last few minutes. SKIP
// LOCKED keeps concurrent batches from queueing on the same old rows, and
// the batch's own codes are excluded because one statement must not touch
// a row twice. The caller sorts the codes and removes duplicates: ON
// CONFLICT may not meet one row twice, and two batches locking their common
// codes in the same order cannot deadlock.
const claimCodes = `WITH c AS (
		SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS c (app_id, code_hash, expires_at)
	), expired AS (
		DELETE FROM wechat_codes WHERE (app_id, code_hash) IN (
			SELECT w.app_id, w.code_hash FROM wechat_codes w
			WHERE w.expires_at <= $4
				AND NOT EXISTS (SELECT 1 FROM c WHERE c.app_id = w.app_id AND c.code_hash = w.code_hash)
			ORDER BY w.expires_at LIMIT $5
			FOR UPDATE OF w SKIP LOCKED)
	)
	INSERT INTO wechat_codes (app_id, code_hash, expires_at) SELECT app_id, code_hash, expires_at FROM c
	ON CONFLICT (app_id, code_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at
	WHERE wechat_codes.expires_at <= $4
	RETURNING app_id, code_hash`

type codeKey struct{ appID, hash string }

type pendingClaim struct {
	key     codeKey
	expires time.Time
	done    chan error // buffered: the writer never waits on a caller
}

type claimBatcher struct {
	s     *Store
	queue batchQueue[*pendingClaim]
}

// ClaimWeChatCode records codeHash until expiresAt; storage.ErrAlreadyExists
// if it is recorded and unexpired. Inside a transaction the claim is the
// transaction's; outside one it is batched with concurrent claims.
func (s *Store) ClaimWeChatCode(ctx context.Context, appID, codeHash string, expiresAt time.Time) error {
	if _, ok := txFrom(ctx); ok {
		won, err := claimMany(ctx, s.db(ctx), []*pendingClaim{{key: codeKey{appID, codeHash}, expires: expiresAt}})
		if err != nil {
			return recordErr("claim wechat code", err)
		}
		return claimAnswer(won[codeKey{appID, codeHash}])
	}
	return s.claims.claim(ctx, codeKey{appID, codeHash}, expiresAt)
}

// claim queues one claim and waits until it is committed (or refused, or
// failed). A caller that gives up (ctx) leaves its claim to be written
// anyway: a code burnt, as when an answer is lost after a commit.
func (b *claimBatcher) claim(ctx context.Context, key codeKey, expires time.Time) error {
	if knownDown(ctx) {
		return errKnownUnavailable
	}
	p := &pendingClaim{key: key, expires: expires, done: make(chan error, 1)}
	err, ok := submit(ctx, &b.queue, b.run, p, p.done)
	if !ok {
		err = recordErr("claim wechat code", ctx.Err())
	}
	return noteDown(ctx, err)
}

// run writes batches until nothing is pending, then ends.
func (b *claimBatcher) run() {
	b.queue.each(func(ctx context.Context, batch []*pendingClaim) {
		if err := b.write(ctx, batch); err != nil {
			for _, p := range b.queue.drain() { // they would each wait out the outage in turn
				p.done <- err
			}
		}
	})
}

// write claims batch and answers its callers; it returns the error when
// the database was unavailable.
func (b *claimBatcher) write(ctx context.Context, batch []*pendingClaim) error {
	db := timed{q: b.s.pool, d: b.s.timeout}
	won, err := claimMany(ctx, db, batch)
	if err == nil || unavailable(err) {
		err = recordErr("claim wechat code", err)
		answerClaims(batch, won, err)
		return unavailableErr(err)
	}
	// Anything else (a deadlock with another process's batch, say) fails
	// the whole statement: claim them one by one, so each caller gets its
	// own code's answer.
	for i, p := range batch {
		won, err := claimMany(ctx, db, []*pendingClaim{p})
		err = recordErr("claim wechat code", err)
		answerClaims([]*pendingClaim{p}, won, err)
		if unavailable(err) { // the rest would each wait it out
			answerClaims(batch[i+1:], nil, err)
			return err
		}
	}
	return nil
}

// claimMany runs claimCodes for the distinct codes of batch and returns
// which it claimed.
func claimMany(ctx context.Context, db querier, batch []*pendingClaim) (map[codeKey]bool, error) {
	sorted := slices.Clone(batch)
	slices.SortFunc(sorted, func(a, b *pendingClaim) int {
		return cmp.Or(cmp.Compare(a.key.appID, b.key.appID), cmp.Compare(a.key.hash, b.key.hash))
	})
	sorted = slices.CompactFunc(sorted, func(a, b *pendingClaim) bool { return a.key == b.key })
	apps, hashes, expires := make([]string, len(sorted)), make([]string, len(sorted)), make([]time.Time, len(sorted))
	for i, p := range sorted {
		apps[i], hashes[i], expires[i] = p.key.appID, p.key.hash, p.expires
	}
	rows, err := db.Query(ctx, claimCodes, apps, hashes, expires, time.Now(), 8*len(sorted))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	won := make(map[codeKey]bool, len(sorted))
	for rows.Next() {
		var k codeKey
		if err := rows.Scan(&k.appID, &k.hash); err != nil {
			return nil, err
		}
		won[k] = true
	}
	return won, rows.Err()
}

// answerClaims tells each caller of batch its outcome: err if the batch
// failed, else nil for the first caller of a code claimed and
// storage.ErrAlreadyExists for everyone else.
func answerClaims(batch []*pendingClaim, won map[codeKey]bool, err error) {
	for _, p := range batch {
		if err != nil {
			p.done <- err
			continue
		}
		p.done <- claimAnswer(won[p.key])
		delete(won, p.key) // a second caller of the code in this batch lost to the first
	}
}

func claimAnswer(won bool) error {
	if won {
		return nil
	}
	return fmt.Errorf("postgres: claim wechat code: %w", storage.ErrAlreadyExists)
}
