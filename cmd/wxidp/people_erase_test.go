package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// dumpRows renders every row of every table of the public schema as text
// (bytea as its bytes), the way a backup would hold them.
func (e *peopleEnv) dumpRows(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	rows, err := e.pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var dump bytes.Buffer
	for _, table := range tables {
		rows, err := e.pool.Query(ctx, `SELECT * FROM "`+table+`"`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&dump, "%s:", table)
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					fmt.Fprintf(&dump, " %s", b)
				} else {
					fmt.Fprintf(&dump, " %v", v)
				}
			}
			dump.WriteByte('\n')
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return dump.String()
}

// TestPeopleErase: DELETE /account with a recent login erases the user:
// no row names their openid, unionid, phone or profile any more, the
// audit trail keeps the event and the subject, and their next login is a
// new subject. An old login is refused (RFC 9470), and so is a token
// without a user.
func TestPeopleErase(t *testing.T) {
	t.Parallel()
	e := newPeopleEnv(t)
	const (
		openid  = "o-erin-7f3a9c"
		unionid = "u-erin-2b8e41"
		phone   = "13512345678"
		nick    = "Erin-nick-5d1e"
		pic     = "https://example.com/erin-pic-9c2f.png"
	)
	// The first login happens 11 minutes ago (the server's clock is set
	// back for it: fosite refuses an auth_time in its future).
	e.clock.advance(-11 * time.Minute)
	tokens := e.signIn(t, openid, unionid, "phone_code", e.wx.PhoneCode("wxpeople", phone))
	e.clock.advance(11 * time.Minute)
	sub := subOf(t, tokens)
	if status, _, body := e.bearer(t, "PATCH", "/account", tokens["access_token"].(string),
		`{"nickname":"`+nick+`","picture":"`+pic+`"}`); status != http.StatusOK {
		t.Fatalf("PATCH: %d %v", status, body)
	}
	needles := []string{openid, unionid, phone, nick, pic}
	before := e.dumpRows(t)
	for _, n := range needles {
		if !strings.Contains(before, n) {
			t.Fatalf("the dump does not hold %q before erasure: the check would prove nothing", n)
		}
	}

	// An 11-minute-old login may not delete the account.
	status, h, body := e.bearer(t, "DELETE", "/account", tokens["access_token"].(string), "")
	if status != http.StatusUnauthorized || body["error"] != "insufficient_user_authentication" ||
		!strings.Contains(h.Get("WWW-Authenticate"), "max_age=600") {
		t.Fatalf("DELETE with an old login: %d %v %q", status, body, h.Get("WWW-Authenticate"))
	}
	if e.dumpRows(t) != before {
		t.Fatal("a refused deletion changed the database")
	}
	// A client's own token has no account.
	cc := e.registerClient(t, map[string]any{"client_id": "svc", "scope": "read"})
	_, _, ccTok := e.postToken(t, "svc", cc, url.Values{"grant_type": {"client_credentials"}})
	if status, _, body := e.bearer(t, "DELETE", "/account", ccTok["access_token"].(string), ""); status != http.StatusForbidden {
		t.Errorf("DELETE with a client_credentials token: %d %v", status, body)
	}

	fresh := e.signIn(t, openid, unionid)
	if subOf(t, fresh) != sub {
		t.Fatal("the second login is another user")
	}
	if status, _, body := e.bearer(t, "DELETE", "/account", fresh["access_token"].(string), ""); status != http.StatusNoContent {
		t.Fatalf("DELETE /account: %d %v", status, body)
	}
	after := e.dumpRows(t)
	for _, n := range needles {
		if strings.Contains(after, n) {
			t.Errorf("after erasure a row still names %q", n)
		}
	}
	if e.active(t, fresh["access_token"].(string)) || e.active(t, tokens["refresh_token"].(string)) {
		t.Error("a token of the erased user is active")
	}
	if status, body := e.refresh(t, fresh["refresh_token"].(string)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("refresh after erasure: %d %v", status, body)
	}
	_, ev := e.adminJSON(t, "GET", "/admin/audit?type=user.deleted", testAdminToken, nil)
	events := ev["events"].([]any)
	if len(events) != 1 || events[0].(map[string]any)["target"] != sub || len(events[0].(map[string]any)["details"].(map[string]any)) != 0 ||
		events[0].(map[string]any)["source"] != "" {
		t.Errorf("audit: %v", events)
	}
	if status, _ := e.adminJSON(t, "GET", "/admin/users/"+sub, testAdminToken, nil); status != http.StatusNotFound {
		t.Errorf("the erased user is still listed: %d", status)
	}
	if again := subOf(t, e.signIn(t, openid, unionid)); again == sub {
		t.Error("the next login reused the erased subject")
	}

	// The admin erasure: same effect, audited, and a second one is 404.
	other := subOf(t, e.signIn(t, "o-frank", ""))
	if status, body := e.adminJSON(t, "DELETE", "/admin/users/"+other, testAdminToken, nil); status != http.StatusNoContent {
		t.Fatalf("admin DELETE: %d %v", status, body)
	}
	if status, _ := e.adminJSON(t, "DELETE", "/admin/users/"+other, testAdminToken, nil); status != http.StatusNotFound {
		t.Errorf("second admin DELETE: %d", status)
	}
	if strings.Contains(e.dumpRows(t), "o-frank") {
		t.Error("the admin erasure left the openid behind")
	}
}
