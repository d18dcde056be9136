package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/web"
)

// auditCall sends one request with X-Request-Id rid (and the admin token
// when path is an admin path) and decodes the JSON answer.
func auditCall(t *testing.T, base, method, path, rid, contentType, body string, agent string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", rid)
	if strings.HasPrefix(path, "/admin/") {
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if agent != "" {
		req.Header.Set("User-Agent", agent)
	}
	return decodeDo(t, req)
}

func auditJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// auditEvents returns the events GET /admin/audit?query answers (one page).
func auditEvents(t *testing.T, s *server, query string) ([]map[string]any, string) {
	t.Helper()
	status, body := s.adminJSON(t, http.MethodGet, "/admin/audit?"+query, testAdminToken, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /admin/audit?%s: %d %v", query, status, body)
	}
	var out []map[string]any
	for _, e := range body["events"].([]any) {
		out = append(out, e.(map[string]any))
	}
	next, _ := body["next_cursor"].(string)
	return out, next
}

// wantAudit is what one audit event must say; details lists keys that must
// be present with these values ("*" means any non-empty value).
type wantAudit struct {
	typ, actor, source, target, outcome string
	details                             map[string]string
}

// checkEventBy finds the event of request rid and compares it.
func checkAuditBy(t *testing.T, s *server, rid string, want wantAudit) {
	t.Helper()
	events, _ := auditEvents(t, s, "limit=1000")
	for _, e := range events {
		if e["request_id"] == rid {
			checkAudit(t, e, want)
			return
		}
	}
	t.Errorf("no audit event with request ID %s (want %s)", rid, want.typ)
}

func checkAudit(t *testing.T, e map[string]any, want wantAudit) {
	t.Helper()
	got := wantAudit{typ: auditStr(e["type"]), actor: auditStr(e["actor"]), source: auditStr(e["source"]), target: auditStr(e["target"]), outcome: auditStr(e["outcome"])}
	if got.typ != want.typ || got.actor != want.actor || got.source != want.source || got.target != want.target || got.outcome != want.outcome {
		t.Errorf("event %v:\n got  %+v\n want %+v", e, got, wantAudit{want.typ, want.actor, want.source, want.target, want.outcome, nil})
	}
	if _, err := time.Parse(time.RFC3339Nano, auditStr(e["time"])); err != nil {
		t.Errorf("event time %v: %v", e["time"], err)
	}
	details, _ := e["details"].(map[string]any)
	for k, v := range want.details {
		if g := auditStr(details[k]); g == "" || (v != "*" && g != v) {
			t.Errorf("%s details %v: %s = %q, want %q", want.typ, details, k, g, v)
		}
	}
}

func auditStr(v any) string { s, _ := v.(string); return s }

// TestAuditEvents: every admin action and security event leaves one audit
// row naming actor, source address, request ID, target and outcome, and no
// secret or token appears in any row.
func TestAuditEvents(t *testing.T) {
	t.Parallel()
	e := newLifecycleEnv(t)
	ctx := context.Background()
	secrets := []string{testSecret, testAdminToken, "secret-of-wxapp1", e.rsSecret, e.otherSecret}
	const jsonType = "application/json"
	admin := func(method, path, rid string, body any, agent string) (int, map[string]any) {
		t.Helper()
		raw := ""
		if body != nil {
			raw = auditJSON(t, body)
		}
		return auditCall(t, e.admin, method, path, rid, jsonType, raw, agent)
	}
	local := "127.0.0.1"

	// Clients: created, a failed creation, updated, secret reset, deleted.
	status, created := admin("POST", "/admin/clients", "rid-create", map[string]any{"client_id": "svc", "scope": "read"}, "")
	if status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, created)
	}
	secrets = append(secrets, auditStr(created["client_secret"]))
	if status, _ := admin("POST", "/admin/clients", "rid-dup", map[string]any{"client_id": "svc"}, ""); status != http.StatusConflict {
		t.Fatalf("duplicate create: %d", status)
	}
	if status, body := admin("PUT", "/admin/clients/svc", "rid-update", map[string]any{"client_name": "Service", "scope": "read"}, ""); status != 200 {
		t.Fatalf("update: %d %v", status, body)
	}
	newSecret := strings.Repeat("r", 40)
	secrets = append(secrets, newSecret)
	if status, body := admin("PUT", "/admin/clients/svc", "rid-reset", map[string]any{"client_secret": newSecret, "scope": "read"}, ""); status != 200 {
		t.Fatalf("secret reset: %d %v", status, body)
	}
	if status, body := admin("DELETE", "/admin/clients/svc", "rid-delete", nil, web.CLIUserAgent); status != http.StatusNoContent {
		t.Fatalf("delete: %d %v", status, body)
	}
	checkAuditBy(t, e.server, "rid-create", wantAudit{"client.created", "admin-api", local, "svc", "success",
		map[string]string{"token_endpoint_auth_method": "client_secret_basic"}})
	checkAuditBy(t, e.server, "rid-dup", wantAudit{"client.created", "admin-api", local, "svc", "failure", map[string]string{"error": "already_exists"}})
	checkAuditBy(t, e.server, "rid-update", wantAudit{"client.updated", "admin-api", local, "svc", "success", nil})
	checkAuditBy(t, e.server, "rid-reset", wantAudit{"client.secret_reset", "admin-api", local, "svc", "success", nil})
	checkAuditBy(t, e.server, "rid-delete", wantAudit{"client.deleted", "cli", local, "svc", "success", nil})

	// Keys: the next key is made old enough to sign, so the rotation goes
	// through; then the retired key is revoked.
	if _, err := e.pool.Exec(ctx, `UPDATE signing_keys SET created_at = now() - interval '1 day' WHERE state = 'next'`); err != nil {
		t.Fatal(err)
	}
	var oldActive, next string
	if err := e.pool.QueryRow(ctx, `SELECT (SELECT kid FROM signing_keys WHERE state = 'active'),
		(SELECT kid FROM signing_keys WHERE state = 'next')`).Scan(&oldActive, &next); err != nil {
		t.Fatal(err)
	}
	if status, body := admin("POST", "/admin/keys/rotate", "rid-rotate", nil, web.CLIUserAgent); status != 200 {
		t.Fatalf("rotate: %d %v", status, body)
	}
	if status, body := admin("DELETE", "/admin/keys/"+oldActive, "rid-revoke", nil, ""); status != 200 {
		t.Fatalf("revoke: %d %v", status, body)
	}
	if status, _ := admin("DELETE", "/admin/keys/no-such-kid", "rid-revoke-unknown", nil, ""); status != http.StatusNotFound {
		t.Fatalf("revoke unknown: %d", status)
	}
	checkAuditBy(t, e.server, "rid-rotate", wantAudit{"key.rotated", "cli", local, next, "success", map[string]string{"retired_kid": oldActive}})
	checkAuditBy(t, e.server, "rid-revoke", wantAudit{"key.revoked", "admin-api", local, oldActive, "success", nil})
	checkAuditBy(t, e.server, "rid-revoke-unknown", wantAudit{"key.revoked", "admin-api", local, "no-such-kid", "failure", map[string]string{"error": "not_found"}})

	// A refresh token used twice: the second use revokes its chain.
	login := e.loginTokens(t, "o-audit")
	rt1 := auditStr(login["refresh_token"])
	status, second := e.refresh(t, rt1)
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, second)
	}
	secrets = append(secrets, rt1, auditStr(login["access_token"]), auditStr(login["id_token"]), auditStr(second["refresh_token"]), auditStr(second["access_token"]))
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {"mp"}, "refresh_token": {rt1}}.Encode()
	if status, body := auditCall(t, e.issuer, "POST", "/oauth2/token", "rid-reuse", "application/x-www-form-urlencoded", form, ""); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", status, body)
	}
	if e.active(t, auditStr(second["refresh_token"])) {
		t.Error("the chain survived the reuse")
	}
	checkAuditBy(t, e.server, "rid-reuse", wantAudit{"refresh_token.reused", "client:mp", local, "mp", "revoked",
		map[string]string{"chain_request_id": "*"}})
	// Introspecting a token of the revoked chain (active() above) reads an
	// inactive refresh token too, but is no reuse.
	if reuses, _ := auditEvents(t, e.server, "type=refresh_token.reused"); len(reuses) != 1 {
		t.Errorf("%d reuse events, want 1: %v", len(reuses), reuses)
	}

	// WeChat refuses a login as high-risk (40226).
	e.wx.FailNext(wechattest.PathCode2Session, 40226)
	code := e.wx.Login("wxapp1", "o-risky", "")
	secrets = append(secrets, code)
	riskForm := url.Values{"grant_type": {"urn:wxidp:params:oauth:grant-type:wechat-code"}, "client_id": {"mp"}, "code": {code}}.Encode()
	if status, body := auditCall(t, e.issuer, "POST", "/oauth2/token", "rid-risk", "application/x-www-form-urlencoded", riskForm, ""); status != 403 {
		t.Fatalf("risky login: %d %v", status, body)
	}
	checkAuditBy(t, e.server, "rid-risk", wantAudit{"wechat.risk_refused", "client:mp", local, "mp", "denied",
		map[string]string{"wechat_appid": "wxapp1"}})

	// A lockout, as the failed-authentication limiter reports it.
	rec := audit.NewRecorder(postgres.New(e.pool), nil)
	rec.Lockout(audit.WithRequest(ctx, "rid-lockout", local), "svc2", "203.0.113.5")
	checkAuditBy(t, e.server, "rid-lockout", wantAudit{"auth.lockout", "anonymous", local, "svc2", "denied",
		map[string]string{"limited_source": "203.0.113.5"}})

	// Last, as it takes the stored secrets away from the running server:
	// `secrets reencrypt`, then a start-up that re-encrypts by itself.
	rotated := strings.Repeat("N", 40)
	secrets = append(secrets, rotated)
	var out bytes.Buffer
	if err := runReencrypt(ctx, e.dsn, rotated+","+testSecret, &out); err != nil {
		t.Fatalf("reencrypt: %v", err)
	}
	events, _ := auditEvents(t, e.server, "type=secrets.reencrypted")
	if len(events) != 1 {
		t.Fatalf("reencrypt events: %v", events)
	}
	checkAudit(t, events[0], wantAudit{"secrets.reencrypted", "cli", "", auditStr(events[0]["target"]), "success", map[string]string{"count": "*"}})
	if !strings.HasPrefix(auditStr(events[0]["target"]), "secret:") || len(auditStr(events[0]["target"])) != len("secret:")+8 {
		t.Errorf("reencrypt target %v, want the secret's fingerprint", events[0]["target"])
	}
	// A start-up with yet another secret first has values to move (one that
	// finds nothing to move records nothing).
	third := strings.Repeat("T", 40)
	secrets = append(secrets, third)
	cfg := testConfig(e.dsn)
	cfg.Secrets = third + "," + rotated + "," + testSecret
	next2 := startServer(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		events, _ = auditEvents(t, next2, "type=secrets.reencrypted")
		if len(events) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the start-up re-encryption runs in the background
	}
	if len(events) != 2 {
		t.Fatalf("no start-up re-encryption event: %v", events)
	}
	checkAudit(t, events[0], wantAudit{"secrets.reencrypted", "system", "", auditStr(events[0]["target"]), "success", map[string]string{"count": "*"}})
	if events[0]["details"].(map[string]any)["count"] == "0" || events[0]["target"] == events[1]["target"] {
		t.Errorf("start-up re-encryption event %v: want a count > 0 under the new first secret", events[0])
	}

	// No row holds a secret, a token or a code.
	var rows string
	if err := e.pool.QueryRow(ctx, `SELECT string_agg(row_to_json(a)::text, E'\n') FROM audit_events a`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if s == "" {
			t.Fatal("a secret to look for is empty: the test lost one")
		}
		if strings.Contains(rows, s) {
			t.Errorf("audit rows hold a secret (%.6s...):\n%s", s, rows)
		}
	}
}
