package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/wxidp/wxidp/migrations"
	"github.com/wxidp/wxidp/storage/postgres"
)

func newMigrateCmd() *cobra.Command {
	var dsn string
	cmd := &cobra.Command{
		Use:       "migrate up|status",
		Short:     "Apply or list database migrations (safe to run from several processes at once)",
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{"up", "status"},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMigrate(cmd.Context(), dsn, args[0], os.Stdout)
		},
	}
	addDatabaseFlag(cmd, &dsn)
	return cmd
}

func runMigrate(ctx context.Context, dsn, action string, out io.Writer) error {
	if dsn == "" {
		return errors.New("WXIDP_DATABASE_URL (--database-url) is required")
	}
	db, err := migrations.OpenDB(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	switch action {
	case "up":
		if err := migrations.Up(ctx, db); err != nil {
			return postgres.MarkUnavailable(err)
		}
		_, err = fmt.Fprintln(out, "migrations applied")
		return err
	default:
		return postgres.MarkUnavailable(migrations.Status(ctx, db, out))
	}
}
