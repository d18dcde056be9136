package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/wxidp/wxidp/janitor"
	"github.com/wxidp/wxidp/storage/postgres"
)

type janitorConfig struct {
	DatabaseURL       string
	DatabaseTimeout   time.Duration
	Batch             int
	InactiveRetention time.Duration
	AuditRetention    time.Duration
	// RefreshTokenTTL bounds InactiveRetention from below: a rotated
	// refresh token is kept as long as the chain it belongs to can live.
	RefreshTokenTTL time.Duration
}

func newJanitorCmd() *cobra.Command {
	var cfg janitorConfig
	cmd := &cobra.Command{
		Use:   "janitor",
		Short: "Delete expired and long-revoked rows in bounded batches, then exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runJanitor(cmd.Context(), cfg, cmd.OutOrStdout(), slog.New(slog.NewJSONHandler(os.Stderr, nil)))
		},
	}
	addDatabaseFlag(cmd, &cfg.DatabaseURL)
	addDatabaseTimeoutFlag(cmd, &cfg.DatabaseTimeout)
	addJanitorFlags(cmd, &cfg.Batch, &cfg.InactiveRetention, &cfg.AuditRetention)
	cmd.Flags().DurationVar(&cfg.RefreshTokenTTL, "refresh-token-ttl", 720*time.Hour, "the server's refresh token lifetime: rotated refresh tokens are kept at least this long")
	bindEnv(cmd.Flags(), "refresh-token-ttl", "WXIDP_REFRESH_TOKEN_TTL")
	return cmd
}

// inactiveRetention is how long rotated and revoked refresh tokens are
// kept: as set, or (0) as long as a refresh token can live, so reusing one
// is recognised as reuse (and revokes its chain) for as long as the chain
// could still be alive.
func inactiveRetention(set, refreshTTL time.Duration) time.Duration {
	if set == 0 {
		return refreshTTL
	}
	return set
}

// checkInactiveRetention refuses a retention shorter than the refresh
// token lifetime: a reuse after it would look like an unknown token and
// leave the chain alive.
func checkInactiveRetention(set, refreshTTL time.Duration) error {
	if set < 0 || (set > 0 && set < refreshTTL) {
		return fmt.Errorf("the inactive retention (%v) must be at least the refresh token lifetime (%v), or 0 to match it: "+
			"a rotated refresh token reused after it is purged is no longer recognised as reuse", set, refreshTTL)
	}
	return nil
}

func addJanitorFlags(cmd *cobra.Command, batch *int, retention, auditRetention *time.Duration) {
	fs := cmd.Flags()
	fs.IntVar(batch, "janitor-batch", 5000, "most rows deleted per table and statement")
	fs.DurationVar(retention, "inactive-retention", 0, "how long rotated or revoked refresh tokens are kept for reuse detection: at least the refresh token lifetime (0: exactly that)")
	bindEnv(fs, "janitor-batch", "WXIDP_JANITOR_BATCH")
	bindEnv(fs, "inactive-retention", "WXIDP_INACTIVE_RETENTION")
	fs.DurationVar(auditRetention, "audit-retention", janitor.DefaultAuditRetention, "how long audit events are kept")
	bindEnv(fs, "audit-retention", "WXIDP_AUDIT_RETENTION")
}

func runJanitor(ctx context.Context, cfg janitorConfig, out io.Writer, log *slog.Logger) error {
	if cfg.DatabaseURL == "" {
		return errors.New("WXIDP_DATABASE_URL (--database-url) is required")
	}
	if cfg.RefreshTokenTTL <= 0 {
		cfg.RefreshTokenTTL = 720 * time.Hour
	}
	if err := checkInactiveRetention(cfg.InactiveRetention, cfg.RefreshTokenTTL); err != nil {
		return err
	}
	cfg.InactiveRetention = inactiveRetention(cfg.InactiveRetention, cfg.RefreshTokenTTL)
	pool, err := postgres.OpenTimeout(ctx, cfg.DatabaseURL, cfg.DatabaseTimeout)
	if err != nil {
		return fmt.Errorf("connect to database: %w", err)
	}
	defer pool.Close()
	start := time.Now()
	stats, err := janitor.New(postgres.New(pool, postgres.WithTimeout(cfg.DatabaseTimeout)), janitor.Options{
		Batch: cfg.Batch, InactiveRetention: cfg.InactiveRetention, AuditRetention: cfg.AuditRetention, Log: log,
	}).RunOnce(ctx)
	tables := make([]string, 0, len(stats))
	for t := range stats {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		fmt.Fprintf(out, "%-28s %d\n", t, stats[t])
	}
	fmt.Fprintf(out, "deleted %d rows in %s\n", stats.Total(), time.Since(start).Round(time.Millisecond))
	return err
}
