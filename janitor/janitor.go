package janitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/wxidp/wxidp/storage"
)

// Store is what the janitor needs from storage.
type Store interface {
	PurgeExpired(ctx context.Context, expiredBefore, inactiveBefore time.Time, batch int) (storage.PurgeStats, error)
	TryLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	PurgeAuditBefore(ctx context.Context, before time.Time, batch int) (int, error)
}

// ErrBusy means another process holds the janitor lease.
var ErrBusy = errors.New("janitor: another process is running the janitor")

// Options tune a janitor; zero values take the defaults.
type Options struct {
	// Batch is the most rows one statement deletes per table (default 5000).
	Batch int
	// InactiveRetention is how long a deactivated refresh token is kept, so
	// that its reuse is still recognised and revokes its grant (default
	// DefaultInactiveRetention, at least the refresh token lifetime). After
	// that, a reuse is just an unknown token.
	InactiveRetention time.Duration
	// AuditRetention is how long audit events are kept
	// (WXIDP_AUDIT_RETENTION, default DefaultAuditRetention).
	AuditRetention time.Duration
	// Leeway keeps rows a little past expiry, for clock skew between
	// processes (default 1 minute).
	Leeway time.Duration
	Log    *slog.Logger
	Now    func() time.Time
}

// Janitor purges expired rows.
type Janitor struct {
	store  Store
	opts   Options
	holder string
}

// DefaultInactiveRetention keeps rotated and revoked refresh tokens as
// long as the default refresh token lifetime (30 days), so a reuse is
// recognised for as long as the chain could be alive.
const DefaultInactiveRetention = 30 * 24 * time.Hour

// DefaultAuditRetention keeps audit events 90 days.
const DefaultAuditRetention = 90 * 24 * time.Hour

// AuditTable names the audit purge's count in the stats RunOnce returns.
const AuditTable = "audit_events"

const (
	leaseName = "janitor"
	leaseFor  = 2 * time.Minute
	// releaseWithin bounds a lease statement that outlives its caller's
	// context (SIGTERM): long enough for a healthy database, short enough
	// not to hold up the shutdown when it is hung.
	releaseWithin = 5 * time.Second
)

// New returns a janitor with a unique lease holder name.
func New(store Store, opts Options) *Janitor {
	if opts.Batch <= 0 {
		opts.Batch = 5000
	}
	if opts.InactiveRetention <= 0 {
		opts.InactiveRetention = DefaultInactiveRetention
	}
	if opts.AuditRetention <= 0 {
		opts.AuditRetention = DefaultAuditRetention
	}
	if opts.Leeway <= 0 {
		opts.Leeway = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Janitor{store: store, opts: opts, holder: uuid.NewString()}
}

// RunOnce purges until nothing is left to purge, holding the lease and
// renewing it between batches. It returns ErrBusy if another process holds
// the lease.
func (j *Janitor) RunOnce(ctx context.Context) (storage.PurgeStats, error) {
	total := storage.PurgeStats{}
	if err := ctx.Err(); err != nil {
		return total, err
	}
	if err := j.lease(ctx); err != nil {
		if !errors.Is(err, ErrBusy) {
			// A TryLease that timed out may have taken the lease in the
			// database all the same.
			j.release(ctx)
		}
		return total, err
	}
	defer j.release(ctx)
	for {
		now := j.opts.Now()
		stats, err := j.store.PurgeExpired(ctx, now.Add(-j.opts.Leeway), now.Add(-j.opts.InactiveRetention), j.opts.Batch)
		for table, n := range stats {
			total[table] += n
		}
		if err != nil {
			return total, fmt.Errorf("janitor: purge: %w", err)
		}
		audited, err := j.store.PurgeAuditBefore(ctx, now.Add(-j.opts.AuditRetention), j.opts.Batch)
		total[AuditTable] += audited
		if err != nil {
			return total, fmt.Errorf("janitor: purge audit events: %w", err)
		}
		if stats.Total()+audited == 0 {
			return total, nil
		}
		if err := j.lease(ctx); err != nil {
			return total, err
		}
	}
}

// release gives the lease up with a fresh context: ctx may be why we are
// stopping.
func (j *Janitor) release(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseWithin)
	defer cancel()
	if err := j.store.ReleaseLease(rctx, leaseName, j.holder); err != nil {
		j.opts.Log.Warn("janitor: release lease", "err", err)
	}
}

// lease takes or renews the lease. Its statement is never cut short by
// ctx: pgx gives up on a canceled statement by closing the connection, but
// the server may already have it and commit it after our release has run on
// another connection, leaving the lease held for its full term. The storage
// deadline (WXIDP_DATABASE_TIMEOUT) still bounds it.
func (j *Janitor) lease(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseWithin)
	defer cancel()
	now := j.opts.Now()
	ok, err := j.store.TryLease(lctx, leaseName, j.holder, now, now.Add(leaseFor))
	if err != nil {
		return fmt.Errorf("janitor: lease: %w", err)
	}
	if !ok {
		return ErrBusy
	}
	return nil
}

// Loop runs the janitor every interval until ctx ends. Only the process
// holding the lease works; the others skip their turn.
func (j *Janitor) Loop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		stats, err := j.RunOnce(ctx)
		switch {
		case errors.Is(err, ErrBusy):
		case err != nil && ctx.Err() == nil:
			j.opts.Log.Error("janitor", "err", err, "deleted", stats.Total())
		case stats.Total() > 0:
			j.opts.Log.Info("janitor", "deleted", stats.Total(), "duration_ms", time.Since(start).Milliseconds())
		}
	}
}
