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
	return cmd
}

func addJanitorFlags(cmd *cobra.Command, batch *int, retention, auditRetention *time.Duration) {
	fs := cmd.Flags()
	fs.IntVar(batch, "janitor-batch", 5000, "most rows deleted per table and statement")
	fs.DurationVar(retention, "inactive-retention", 7*24*time.Hour, "how long rotated or revoked refresh tokens are kept for reuse detection")
	bindEnv(fs, "janitor-batch", "WXIDP_JANITOR_BATCH")
	bindEnv(fs, "inactive-retention", "WXIDP_INACTIVE_RETENTION")
	fs.DurationVar(auditRetention, "audit-retention", janitor.DefaultAuditRetention, "how long audit events are kept")
	bindEnv(fs, "audit-retention", "WXIDP_AUDIT_RETENTION")
}

func runJanitor(ctx context.Context, cfg janitorConfig, out io.Writer, log *slog.Logger) error {
	if cfg.DatabaseURL == "" {
		return errors.New("WXIDP_DATABASE_URL (--database-url) is required")
	}
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
