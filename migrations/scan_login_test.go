package migrations_test

import (
	"testing"
)

// 00008 gives every existing client empty scan-to-login fields, creates the
// ticket and browser-session tables with their integrity rules (a known
// state, a user exactly when scanned, gone with their client or user), and
// Down removes all of it; Up again restores it.
func TestScanLoginMigration(t *testing.T) {
	t.Parallel()
	ctx, p, conn, _ := atVersion(t, 7)
	if _, err := conn.Exec(ctx, `INSERT INTO clients (id, token_endpoint_auth_method, created_at, updated_at)
		VALUES ('old', 'client_secret_basic', now(), now())`); err != nil {
		t.Fatalf("insert a client before 00008: %v", err)
	}
	if _, err := p.UpTo(ctx, 8); err != nil {
		t.Fatalf("up: %v", err)
	}
	var (
		uris []string
		page string
	)
	if err := conn.QueryRow(ctx, `SELECT post_logout_redirect_uris, wechat_login_page FROM clients WHERE id = 'old'`).
		Scan(&uris, &page); err != nil || uris == nil || len(uris) != 0 || page != "" {
		t.Fatalf("new fields of an existing client = %v, %q, %v; want empty", uris, page, err)
	}

	if _, err := conn.Exec(ctx, `INSERT INTO users (id, created_at, updated_at) VALUES ('u1', now(), now())`); err != nil {
		t.Fatal(err)
	}
	insert := `INSERT INTO login_tickets (id, browser_hash, client_id, request, scopes, state, user_id, created_at, expires_at)
		VALUES ($1, 'h', 'old', 'response_type=code', '{openid}', $2, $3, now(), now() + interval '5 minutes')`
	for _, bad := range []struct {
		what, state string
		user        any
	}{
		{"in an unknown state", "bogus", "u1"},
		{"waiting with a user", "waiting", "u1"},
		{"scanned without a user", "scanned", nil},
	} {
		if _, err := conn.Exec(ctx, insert, "bad", bad.state, bad.user); err == nil {
			t.Errorf("a ticket %s was stored", bad.what)
		}
	}
	if _, err := conn.Exec(ctx, insert, "t-waiting", "waiting", nil); err != nil {
		t.Fatalf("insert a waiting ticket: %v", err)
	}
	if _, err := conn.Exec(ctx, insert, "t-scanned", "scanned", "u1"); err != nil {
		t.Fatalf("insert a scanned ticket: %v", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO browser_sessions (id, user_id, auth_time, created_at, expires_at)
		VALUES ('s1', 'u1', now(), now(), now() + interval '1 day')`); err != nil {
		t.Fatalf("insert a browser session: %v", err)
	}
	var amr []string
	if err := conn.QueryRow(ctx, `SELECT amr FROM browser_sessions WHERE id = 's1'`).Scan(&amr); err != nil || amr == nil || len(amr) != 0 {
		t.Errorf("amr by default = %v, %v; want empty", amr, err)
	}
	for _, idx := range []string{"login_tickets_expires_at", "browser_sessions_expires_at", "browser_sessions_user_id"} {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, idx).Scan(&exists); err != nil || !exists {
			t.Errorf("index %s: exists = %v, %v", idx, exists, err)
		}
	}
	// Deleting the user takes its ticket and session; deleting the client
	// takes the rest.
	if _, err := conn.Exec(ctx, `DELETE FROM users WHERE id = 'u1'`); err != nil {
		t.Fatal(err)
	}
	var tickets, sessions int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM login_tickets), (SELECT count(*) FROM browser_sessions)`).
		Scan(&tickets, &sessions); err != nil || tickets != 1 || sessions != 0 {
		t.Errorf("after deleting the user: %d tickets, %d sessions, %v; want 1, 0", tickets, sessions, err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM clients WHERE id = 'old'`); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM login_tickets`).Scan(&tickets); err != nil || tickets != 0 {
		t.Errorf("after deleting the client: %d tickets, %v; want 0", tickets, err)
	}

	if _, err := p.DownTo(ctx, 7); err != nil {
		t.Fatalf("down: %v", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('login_tickets') IS NOT NULL OR to_regclass('browser_sessions') IS NOT NULL
		OR EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'clients'
			AND column_name IN ('post_logout_redirect_uris', 'wechat_login_page'))`).Scan(&exists); err != nil || exists {
		t.Errorf("tables or columns after Down: %v, %v; want gone", exists, err)
	}
	if _, err := p.UpTo(ctx, 8); err != nil {
		t.Fatalf("up again: %v", err)
	}
}
