package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
)

// seedAudit inserts n events per (type, target), one second apart going
// back from base, straight into the table.
func seedAudit(t *testing.T, e *wechatEnv, typ, target string, n int, base time.Time) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO audit_events (created_at, type, actor, target, outcome)
		SELECT $1::timestamptz - make_interval(secs => i), $2, 'admin-api', $3, 'success' FROM generate_series(0, $4 - 1) AS i`,
		base, typ, target, n); err != nil {
		t.Fatal(err)
	}
}

// walkAudit follows next_cursor from the first page of query and returns
// every event's id, checking that pages come newest first.
func walkAudit(t *testing.T, s *server, query string) []int64 {
	t.Helper()
	var (
		ids    []int64
		cursor string
		last   time.Time
	)
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatal("pages never end")
		}
		q := query
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		events, next := auditEvents(t, s, q)
		for _, e := range events {
			at, err := time.Parse(time.RFC3339Nano, auditStr(e["time"]))
			if err != nil || (!last.IsZero() && at.After(last)) {
				t.Fatalf("event %v out of order (after %v): %v", e, last, err)
			}
			last = at
			ids = append(ids, int64(e["id"].(float64)))
		}
		if next == "" {
			return ids
		}
		if len(events) == 0 {
			t.Fatal("a cursor to an empty page")
		}
		cursor = next
	}
}

// TestAdminAuditPagingAndFilters: GET /admin/audit pages with an opaque
// cursor through every match exactly once, filters by type, target and a
// [since, until) range, and refuses bad input with 400 invalid_request.
func TestAdminAuditPagingAndFilters(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	base := time.Now().UTC().Truncate(time.Second)
	seedAudit(t, e, "client.created", "a", 7, base)
	seedAudit(t, e, "client.created", "b", 5, base) // same instants as a's: ties broken by id
	seedAudit(t, e, "key.rotated", "kid-1", 3, base.Add(-time.Hour))

	all := walkAudit(t, e.server, "limit=4")
	if len(all) != 15 || len(slices.Compact(slices.Sorted(slices.Values(all)))) != 15 {
		t.Fatalf("walked %d events (%v), want each of 15 once", len(all), all)
	}
	if one := walkAudit(t, e.server, "limit=1000"); !slices.Equal(one, all) {
		t.Errorf("one page %v differs from the walk %v", one, all)
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"type=client.created&limit=5", 12},
		{"target=a&limit=2", 7},
		{"type=client.created&target=b&limit=3", 5},
		{"type=key.rotated", 3},
		{"since=" + url.QueryEscape(base.Add(-2*time.Second).Format(time.RFC3339)), 6},  // inclusive: a, b at 0, -1, -2 s
		{"until=" + url.QueryEscape(base.Add(-30*time.Minute).Format(time.RFC3339)), 3}, // only the keys
		{"target=a&since=" + url.QueryEscape(base.Add(-3*time.Second).Format(time.RFC3339)) + // [-3 s, -1 s): 2
			"&until=" + url.QueryEscape(base.Add(-time.Second).Format(time.RFC3339)), 2},
		{"type=auth.lockout", 0},
	} {
		if got := walkAudit(t, e.server, tc.query); len(got) != tc.want {
			t.Errorf("%s: %d events, want %d", tc.query, len(got), tc.want)
		}
	}
	// The default page is 100.
	seedAudit(t, e, "auth.lockout", "x", 150, base.Add(-2*time.Hour))
	if events, next := auditEvents(t, e.server, "type=auth.lockout"); len(events) != 100 || next == "" {
		t.Errorf("default page: %d events, next %q; want 100 and a cursor", len(events), next)
	}

	for _, bad := range []string{
		"type=client.exploded", "since=yesterday", "until=2024-13-01T00:00:00Z",
		"since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z", "limit=0", "limit=1001", "limit=ten",
		"cursor=garbage", "cursor=a1.Zm9v", "cursor=" + strings.Repeat("A", 500), "target=" + strings.Repeat("t", 300),
	} {
		status, body := e.adminJSON(t, http.MethodGet, "/admin/audit?"+bad, testAdminToken, nil)
		if status != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Errorf("%.60s: %d %v, want 400 invalid_request", bad, status, body)
		}
	}
	if status, _ := e.adminJSON(t, http.MethodGet, "/admin/audit", "", nil); status != http.StatusUnauthorized {
		t.Errorf("without the admin token: %d, want 401", status)
	}
}

// TestAuditCLI: `wxidp audit` follows the API's cursors past one page
// (1,000 events), filters, and prints text lines or JSON lines.
func TestAuditCLI(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	base := time.Now().UTC().Truncate(time.Second)
	seedAudit(t, e, "auth.lockout", "svc", 1005, base.Add(-time.Hour))
	seedAudit(t, e, "client.deleted", "gone", 1, base)
	run := func(args ...string) []string {
		t.Helper()
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(append([]string{"audit"}, args...), "--endpoint", e.admin, "--token", testAdminToken))
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("wxidp audit %v: %v\n%s", args, err, out.String())
		}
		return strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	}
	if lines := run("--type", "auth.lockout", "--limit", "0"); len(lines) != 1005 {
		t.Errorf("--limit 0 printed %d lines, want all 1005", len(lines))
	}
	if lines := run("--limit", "3"); len(lines) != 3 || !strings.Contains(lines[0], "client.deleted success target=gone actor=admin-api") {
		t.Errorf("--limit 3 printed %d lines, the first %q", len(lines), lines[0])
	}
	// Events at base-1h and base-1h-1s; --until as a duration ago.
	lines := run("--target", "svc", "--since", base.Add(-time.Hour-time.Second).Format(time.RFC3339), "--until", "59m", "--json")
	if len(lines) != 2 {
		t.Fatalf("--json with a range printed %d lines, the first %q", len(lines), lines[0])
	}
	var ev struct {
		Type, Target, Outcome string
	}
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.Type != "auth.lockout" || ev.Target != "svc" || ev.Outcome != "success" {
		t.Errorf("JSON line %q: %v %+v", lines[0], err, ev)
	}
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"audit", "--type", "nonsense", "--endpoint", e.admin, "--token", testAdminToken})
	if err := root.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("unknown type: %v, want the API's 400", err)
	}
}

// TestJanitorAuditRetention: the janitor deletes audit events older than
// the retention and keeps the rest; the retention defaults to 90 days and
// reads WXIDP_AUDIT_RETENTION.
func TestJanitorAuditRetention(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	now := time.Now().UTC()
	seedAudit(t, e, "client.created", "old", 7, now.Add(-48*time.Hour))
	seedAudit(t, e, "client.created", "new", 3, now.Add(-time.Hour))
	var out bytes.Buffer
	err := runJanitor(context.Background(), janitorConfig{DatabaseURL: e.dsn, DatabaseTimeout: 5 * time.Second,
		Batch: 2, InactiveRetention: time.Hour, RefreshTokenTTL: time.Hour, AuditRetention: 24 * time.Hour}, &out, quietLog())
	if err != nil {
		t.Fatalf("janitor: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "audit_events") || !strings.Contains(out.String(), fmt.Sprintf("%-28s %d", "audit_events", 7)) {
		t.Errorf("janitor output lacks the 7 audit events: %s", out.String())
	}
	left, err := postgres.New(e.pool).ListAudit(context.Background(), storage.AuditFilter{}, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 3 || left[0].Target != "new" || left[2].Target != "new" {
		t.Errorf("left %+v, want the 3 new events", left)
	}

	f := newJanitorCmd().Flags().Lookup("audit-retention")
	if f == nil || f.DefValue != (90*24*time.Hour).String() || !strings.Contains(f.Usage, "WXIDP_AUDIT_RETENTION") {
		t.Errorf("--audit-retention flag: %+v", f)
	}
	if f := newServeCmd().Flags().Lookup("audit-retention"); f == nil {
		t.Error("serve has no --audit-retention (its janitor loop purges too)")
	}
}
