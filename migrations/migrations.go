package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// Waiting for the lock is polled (goose's session locker has no blocking
// mode); one second keeps a second `migrate up` from idling long, and ten
// minutes covers a slow index build on a large table by the holder.
const (
	lockPollSeconds = 1
	lockPolls       = 600
)

// FS returns the embedded migration files, read-only. The test helpers key
// their template database by its content.
func FS() fs.FS { return files }

// OpenDB opens a database/sql handle over pgx for dsn; goose speaks only
// database/sql. The caller closes it. dsn is the URL serve takes, so it is
// parsed as pgxpool parses it: its pool_* parameters size serve's pool and
// are not sent to PostgreSQL, which would refuse them as unknown settings.
func OpenDB(dsn string) (*sql.DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// Not wrapped: pgx's parse error carries the DSN, and its password
		// redaction is best effort.
		return nil, errors.New("migrations: cannot parse the database URL (not shown: it may hold a password)")
	}
	return stdlib.OpenDB(*cfg.ConnConfig), nil
}

func newProvider(db *sql.DB) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(lockPollSeconds, lockPolls))
	if err != nil {
		return nil, fmt.Errorf("migrations: locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Up applies every pending migration. It is safe to call from several
// processes at once.
func Up(ctx context.Context, db *sql.DB) error {
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations: up: %w", err)
	}
	return nil
}

// Status writes one line per known migration to w: version, state (applied or
// pending), when it was applied, and its file.
func Status(ctx context.Context, db *sql.DB, w io.Writer) error {
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	list, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("migrations: status: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
	for _, m := range list {
		applied := "-"
		if !m.AppliedAt.IsZero() {
			applied = m.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.Source.Version, m.State, applied, m.Source.Path)
	}
	return tw.Flush()
}

// Latest is the highest version among the embedded migrations: the version
// Up leaves a database at.
func Latest() (int64, error) {
	entries, err := files.ReadDir(".")
	if err != nil {
		return 0, err
	}
	var latest int64
	for _, e := range entries {
		v, err := goose.NumericComponent(e.Name())
		if err != nil {
			return 0, fmt.Errorf("migrations: %s: %w", e.Name(), err)
		}
		latest = max(latest, v)
	}
	return latest, nil
}
