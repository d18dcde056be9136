package storage

import (
	"context"
	"time"
)

// PurgeStats counts what one PurgeExpired call deleted, per table.
type PurgeStats map[string]int

// Total is the number of rows deleted.
func (s PurgeStats) Total() int {
	n := 0
	for _, v := range s {
		n += v
	}
	return n
}

// Maintenance is what the janitor needs: bounded deletes and a lease that
// lets one process at a time do the work.
type Maintenance interface {
	// PurgeExpired deletes, in each table, at most batch rows that can no
	// longer matter: tokens, codes, PKCE and OIDC sessions, JTIs, WeChat
	// code claims, login tickets and browser sessions whose expiry is
	// before expiredBefore, and refresh tokens deactivated (rotated or
	// revoked) before inactiveBefore. Each table's delete is its own short
	// statement (no table-wide lock, no full-table load: it walks the
	// expiry index); callers loop until Total() is 0.
	PurgeExpired(ctx context.Context, expiredBefore, inactiveBefore time.Time, batch int) (PurgeStats, error)
	// TryLease takes the named lease for holder until `until` if it is free,
	// expired or already holder's; it returns whether holder has it now.
	TryLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error)
	// ReleaseLease gives the lease up if holder has it.
	ReleaseLease(ctx context.Context, name, holder string) error
}
