package migrations_test

import (
	"strings"
	"testing"
)

// 00006 creates an append-only audit table: rows go in and (for retention)
// out, but an UPDATE is refused, so nobody rewrites history through the
// application's own role by mistake. Its Down removes it, and Up again
// recreates it.
func TestAuditMigration(t *testing.T) {
	t.Parallel()
	ctx, p, conn, _ := atVersion(t, 6)
	insert := `INSERT INTO audit_events (created_at, type, outcome, details) VALUES (now(), 'client.created', 'success', '{"k":"v"}')`
	if _, err := conn.Exec(ctx, insert); err != nil {
		t.Fatalf("insert: %v", err)
	}
	_, err := conn.Exec(ctx, `UPDATE audit_events SET outcome = 'failure'`)
	if err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("update of an audit row: %v, want refused as append-only", err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM audit_events`); err != nil {
		t.Fatalf("delete (retention): %v", err)
	}
	for _, idx := range []string{"audit_events_time", "audit_events_type_time", "audit_events_target_time"} {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, idx).Scan(&exists); err != nil || !exists {
			t.Errorf("index %s: exists = %v, %v", idx, exists, err)
		}
	}

	if _, err := p.DownTo(ctx, 5); err != nil {
		t.Fatalf("down: %v", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('audit_events') IS NOT NULL OR
		EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'audit_events_append_only')`).Scan(&exists); err != nil || exists {
		t.Errorf("audit table or trigger function after Down: %v, %v; want gone", exists, err)
	}
	if _, err := p.UpTo(ctx, 6); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if _, err := conn.Exec(ctx, insert); err != nil {
		t.Fatalf("insert after up again: %v", err)
	}
}
