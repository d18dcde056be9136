package postgres_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
	"github.com/wxidp/wxidp/storage/storagetest"
)

// TestConformanceRepeatableReadDefault runs the groups that rely on
// transaction semantics (identity linking after a lock wait, refresh
// rotation, concurrent writers) against a database whose default isolation
// is REPEATABLE READ, as some operators configure: the store states its
// isolation level in every transaction instead of inheriting the default.
func TestConformanceRepeatableReadDefault(t *testing.T) {
	storagetest.Run(t, repeatableReadStore, "Users", "UserRaces", "Concurrency", "RefreshToken", "Revocation", "Transactions", "KeyRotation", "WeChatCodes", "WeChatTokens", "Leases")
}

// repeatableReadStore returns a store on a fresh database whose
// default_transaction_isolation is REPEATABLE READ for every connection.
func repeatableReadStore(t *testing.T) *postgres.Store {
	t.Helper()
	_, admin, dsn := postgrestest.NewStore(t)
	ctx := context.Background()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+db+" SET default_transaction_isolation = 'repeatable read'"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var level string
	if err := conn.QueryRow(ctx, "SHOW default_transaction_isolation").Scan(&level); err != nil || level != "repeatable read" {
		t.Fatalf("default_transaction_isolation = %q (%v), want repeatable read", level, err)
	}
	// A new pool: the setting applies to sessions started after it.
	pool, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return postgres.New(pool)
}
