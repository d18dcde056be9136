package migrations_test

import (
	"strings"
	"testing"
)

// 00007 gives every existing client an empty allowed_cors_origins, and the
// preflight's any-client lookup (storage/postgres CORSOriginAllowed's query)
// can use its index. Down removes both; Up again restores them.
func TestCORSMigration(t *testing.T) {
	t.Parallel()
	ctx, p, conn, _ := atVersion(t, 6)
	if _, err := conn.Exec(ctx, `INSERT INTO clients (id, token_endpoint_auth_method, created_at, updated_at)
		VALUES ('old', 'client_secret_basic', now(), now())`); err != nil {
		t.Fatalf("insert a client before 00007: %v", err)
	}
	if _, err := p.UpTo(ctx, 7); err != nil {
		t.Fatalf("up: %v", err)
	}
	var origins []string
	if err := conn.QueryRow(ctx, `SELECT allowed_cors_origins FROM clients WHERE id = 'old'`).Scan(&origins); err != nil || origins == nil || len(origins) != 0 {
		t.Fatalf("allowed_cors_origins of an existing client = %v, %v; want empty", origins, err)
	}
	// The planner picks a scan on a table this small; forbidding it shows
	// whether the index can answer the query at all.
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	rows, err := conn.Query(ctx, `EXPLAIN SELECT EXISTS (SELECT 1 FROM clients
		WHERE allowed_cors_origins @> ARRAY['https://app.example.com'::text] AND ('' = '' OR id = ''))`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if rows.Err() != nil || !strings.Contains(plan.String(), "clients_allowed_cors_origins") {
		t.Errorf("the origin lookup does not use the index (%v):\n%s", rows.Err(), plan.String())
	}

	if _, err := p.DownTo(ctx, 6); err != nil {
		t.Fatalf("down: %v", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_name = 'clients' AND column_name = 'allowed_cors_origins')
		OR to_regclass('clients_allowed_cors_origins') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Errorf("column or index after Down: %v, %v; want gone", exists, err)
	}
	if _, err := p.UpTo(ctx, 7); err != nil {
		t.Fatalf("up again: %v", err)
	}
}
