package migrations_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// 00004 adds the one-next-key index and dates retired keys stored without a
// retirement time. It runs in a transaction: on a database it cannot apply
// to (two next keys) it must fail and change nothing.
func TestKeyRotationMigration(t *testing.T) {
	t.Parallel()
	ctx, p, conn, _ := atVersion(t, 3)
	insertKey := func(kid, state string, retiredAt *time.Time) error {
		_, err := conn.Exec(ctx, `INSERT INTO signing_keys (kid, algorithm, state, private_key, created_at, retired_at)
			VALUES ($1, 'RS256', $2, 'x', now(), $3)`, kid, state, retiredAt)
		return err
	}
	mustInsert := func(kid, state string, retiredAt *time.Time) {
		t.Helper()
		if err := insertKey(kid, state, retiredAt); err != nil {
			t.Fatalf("insert %s: %v", kid, err)
		}
	}
	retiredAt := func(kid string) *time.Time {
		t.Helper()
		var at *time.Time
		if err := conn.QueryRow(ctx, `SELECT retired_at FROM signing_keys WHERE kid = $1`, kid).Scan(&at); err != nil {
			t.Fatalf("retired_at of %s: %v", kid, err)
		}
		return at
	}
	known := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	mustInsert("k-active", "active", nil)
	mustInsert("k-retired-undated", "retired", nil)
	mustInsert("k-retired", "retired", &known)
	// Two next keys were allowed before 00004; a database holding them
	// cannot take the index.
	mustInsert("k-next-1", "next", nil)
	mustInsert("k-next-2", "next", nil)

	if _, err := p.Up(ctx); err == nil {
		t.Fatal("up with two next keys: nil, want the unique index to fail")
	}
	if v, err := p.GetDBVersion(ctx); err != nil || v != 3 {
		t.Errorf("version after the failed up = %d, %v; want 3", v, err)
	}
	if at := retiredAt("k-retired-undated"); at != nil {
		t.Errorf("retired_at after the failed up = %v, want it rolled back to NULL", at)
	}

	if _, err := conn.Exec(ctx, `DELETE FROM signing_keys WHERE kid = 'k-next-2'`); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	if at := retiredAt("k-retired-undated"); at == nil || at.Before(before.Add(-time.Minute)) {
		t.Errorf("retired_at of a retired key without one = %v, want about now", at)
	}
	if at := retiredAt("k-retired"); at == nil || !at.Equal(known) {
		t.Errorf("retired_at of a dated retired key = %v, want %v kept", at, known)
	}
	err := insertKey("k-next-2", "next", nil)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.ConstraintName != "signing_keys_one_next" {
		t.Errorf("second next key after 00004: %v, want a violation of signing_keys_one_next", err)
	}

	// Down to before 00004, whatever came after it.
	if _, err := p.DownTo(ctx, 3); err != nil {
		t.Fatalf("down: %v", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('signing_keys_one_next') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Errorf("signing_keys_one_next after Down: exists = %v, %v; want gone", exists, err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
}
