package migrations_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"

	"github.com/wxidp/wxidp/migrations"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// atVersion gives a test a fresh database migrated up to version, the goose
// provider to move it further, and a connection to it, all closed when the
// test ends.
func atVersion(t *testing.T, version int64) (context.Context, *goose.Provider, *pgx.Conn, string) {
	t.Helper()
	dsn := postgrestest.DSN(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	db, err := migrations.OpenDB(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, version); err != nil {
		t.Fatalf("up to %d: %v", version, err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return ctx, p, conn, dsn
}
