package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
)

// runUsers runs `wxidp users ARGS` in-process against srv, with stdin as
// standard input, and returns what it printed to standard output and error.
func runUsers(t *testing.T, srv *server, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append(append([]string{"users"}, args...), "--endpoint", srv.admin, "--token", testAdminToken))
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// usersJSON runs a `users` command with -o json and decodes its output.
func usersJSON(t *testing.T, srv *server, args ...string) map[string]any {
	t.Helper()
	out, stderr, err := runUsers(t, srv, "", append(args, "-o", "json")...)
	if err != nil {
		t.Fatalf("users %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("users %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
	return got
}

func subsOf(t *testing.T, list map[string]any) []string {
	t.Helper()
	users, ok := list["users"].([]any)
	if !ok {
		t.Fatalf("no users array: %v", list)
	}
	var subs []string
	for _, u := range users {
		subs = append(subs, u.(map[string]any)["sub"].(string))
	}
	slices.Sort(subs)
	return subs
}

// TestUsersCLI: two users logged in through WeChat are found by openid and
// phone, paged through with --limit 1 --all, shown with their identity,
// disabled (their refresh then fails), enabled and deleted, in JSON and
// as tables.
func TestUsersCLI(t *testing.T) {
	t.Parallel()
	e := newPeopleEnv(t)
	alice := e.signIn(t, "o-alice", "u-alice", "phone_code", e.wx.PhoneCode("wxpeople", "13800138000"))
	bob := e.signIn(t, "o-bob", "")
	aliceSub, bobSub := subOf(t, alice), subOf(t, bob)
	if status, _, body := e.bearer(t, "PATCH", "/account", alice["access_token"].(string), `{"nickname":"Alice W"}`); status != http.StatusOK {
		t.Fatalf("PATCH /account: %d %v", status, body)
	}
	both := []string{aliceSub, bobSub}
	slices.Sort(both)

	// find, JSON.
	if got := subsOf(t, usersJSON(t, e.server, "find", "--openid", "o-alice")); !slices.Equal(got, []string{aliceSub}) {
		t.Errorf("find --openid o-alice: %v, want [%s]", got, aliceSub)
	}
	if got := subsOf(t, usersJSON(t, e.server, "find", "--openid", "o-bob", "--appid", "wxpeople")); !slices.Equal(got, []string{bobSub}) {
		t.Errorf("find --openid o-bob --appid wxpeople: %v, want [%s]", got, bobSub)
	}
	if got := subsOf(t, usersJSON(t, e.server, "find", "--openid", "o-bob", "--appid", "wxother")); len(got) != 0 {
		t.Errorf("find in another app: %v, want none", got)
	}
	byPhone := usersJSON(t, e.server, "find", "--phone", "13800138000")
	if got := subsOf(t, byPhone); !slices.Equal(got, []string{aliceSub}) {
		t.Errorf("find --phone: %v, want [%s]", got, aliceSub)
	}
	if u := byPhone["users"].([]any)[0].(map[string]any); u["phone_number"] != "13800138000" || u["nickname"] != "Alice W" || u["disabled"] != false {
		t.Errorf("find --phone: user %v", u)
	}
	if got := subsOf(t, usersJSON(t, e.server, "find", "--unionid", "u-alice")); !slices.Equal(got, []string{aliceSub}) {
		t.Errorf("find --unionid: %v, want [%s]", got, aliceSub)
	}
	if got := subsOf(t, usersJSON(t, e.server, "find", "--client-id", "mp")); !slices.Equal(got, both) {
		t.Errorf("find --client-id mp: %v, want %v", got, both)
	}

	// Paging: one page of one with its cursor, or every page with --all.
	page := usersJSON(t, e.server, "find", "--limit", "1")
	if len(page["users"].([]any)) != 1 || page["next_cursor"] == nil {
		t.Fatalf("find --limit 1: %v", page)
	}
	rest := usersJSON(t, e.server, "find", "--limit", "1", "--cursor", page["next_cursor"].(string))
	got := append(subsOf(t, page), subsOf(t, rest)...)
	slices.Sort(got)
	if !slices.Equal(got, both) {
		t.Errorf("two pages: %v, want %v", got, both)
	}
	all := usersJSON(t, e.server, "find", "--limit", "1", "--all")
	if got := subsOf(t, all); !slices.Equal(got, both) {
		t.Errorf("find --limit 1 --all: %v, want %v", got, both)
	}
	if _, ok := all["next_cursor"]; ok {
		t.Errorf("find --all printed a cursor: %v", all)
	}
	out, stderr, err := runUsers(t, e.server, "", "find", "--limit", "1", "--all", "-o", "table")
	if err != nil || !strings.Contains(out, aliceSub) || !strings.Contains(out, bobSub) || stderr != "" {
		t.Errorf("find --limit 1 --all -o table: %v\n%s%s", err, out, stderr)
	}
	out, stderr, err = runUsers(t, e.server, "", "find", "--limit", "1", "-o", "table")
	if err != nil || !strings.Contains(stderr, "--cursor u1.") {
		t.Errorf("find --limit 1 -o table does not print the next cursor: %v\n%s%s", err, out, stderr)
	}

	// find, table: a header and one aligned row.
	out, _, err = runUsers(t, e.server, "", "find", "--phone", "13800138000", "-o", "table")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if err != nil || len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "SUB CREATED DISABLED PHONE NICKNAME" {
		t.Fatalf("find -o table: %v\n%s", err, out)
	}
	if f := strings.Fields(lines[1]); len(f) != 6 || f[0] != aliceSub || f[2] != "no" || f[3] != "13800138000" || f[4]+" "+f[5] != "Alice W" ||
		strings.Index(lines[0], "PHONE") != strings.Index(lines[1], "13800138000") {
		t.Errorf("find -o table row: %q under %q", lines[1], lines[0])
	}
	// Without -o, output that is not a terminal is JSON.
	out, _, err = runUsers(t, e.server, "", "find", "--openid", "o-bob")
	if err != nil || !json.Valid([]byte(out)) || !strings.Contains(out, "\n  \"users\"") {
		t.Errorf("find piped: not indented JSON: %v\n%s", err, out)
	}

	// get: the identity and the refresh token chain.
	d := usersJSON(t, e.server, "get", aliceSub)
	ids, _ := d["identities"].([]any)
	if d["sub"] != aliceSub || len(ids) != 1 || d["last_login_at"] == nil {
		t.Fatalf("get: %v", d)
	}
	if id := ids[0].(map[string]any); id["appid"] != "wxpeople" || id["openid"] != "o-alice" || id["unionid"] != "u-alice" {
		t.Errorf("get: identity %v", id)
	}
	if chains, _ := d["refresh_token_chains"].([]any); len(chains) != 1 || chains[0].(map[string]any)["client_id"] != "mp" {
		t.Errorf("get: refresh_token_chains %v", d["refresh_token_chains"])
	}
	out, _, err = runUsers(t, e.server, "", "get", aliceSub, "-o", "table")
	for _, want := range []string{"sub:", aliceSub, "phone_number:", "13800138000", "Alice W", "IDENTITIES (1)",
		"APPID", "OPENID", "wxpeople", "o-alice", "u-alice", "REFRESH TOKEN CHAINS (1)", "CLIENT", "offline_access"} {
		if !strings.Contains(out, want) {
			t.Errorf("get -o table lacks %q: %v\n%s", want, err, out)
		}
	}

	// disable: the refresh token fails; enable: the user logs in again.
	if got := usersJSON(t, e.server, "disable", aliceSub); got["sub"] != aliceSub || got["disabled"] != true || got["disabled_at"] == nil {
		t.Fatalf("disable: %v", got)
	}
	if status, body := e.refresh(t, alice["refresh_token"].(string)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("refresh of a disabled user: %d %v, want 400 invalid_grant", status, body)
	}
	if status, body := e.refresh(t, bob["refresh_token"].(string)); status != http.StatusOK {
		t.Errorf("bob's refresh: %d %v", status, body)
	}
	out, _, err = runUsers(t, e.server, "", "find", "--openid", "o-alice", "-o", "table")
	if f := strings.Fields(strings.Split(out, "\n")[1]); err != nil || f[2] != "yes" {
		t.Errorf("find -o table of a disabled user: %v\n%s", err, out)
	}
	out, _, err = runUsers(t, e.server, "", "enable", aliceSub, "-o", "table")
	if err != nil || !strings.Contains(out, "sub:") || !strings.Contains(out, aliceSub) ||
		!strings.Contains(out, "disabled:") || strings.Contains(out, "yes") || strings.Contains(out, "IDENTITIES") {
		t.Fatalf("enable -o table: %v\n%s", err, out)
	}
	if got := usersJSON(t, e.server, "get", aliceSub); got["disabled"] != false {
		t.Fatalf("enabled user: %v", got)
	}
	if status, _, body := e.login(t, "mp", e.wx.Login("wxpeople", "o-alice", ""), "scope", "openid"); status != http.StatusOK || subOf(t, body) != aliceSub {
		t.Fatalf("login after enable: %d %v", status, body)
	}

	// delete: refused without --yes when stdin is not a terminal; with --yes
	// the user is gone.
	_, _, err = runUsers(t, e.server, aliceSub+"\n", "delete", aliceSub)
	if err == nil || !strings.Contains(err.Error(), "--yes") || !strings.Contains(err.Error(), "not a terminal") {
		t.Fatalf("delete without --yes: %v", err)
	}
	if got := usersJSON(t, e.server, "get", aliceSub); got["sub"] != aliceSub {
		t.Fatalf("a refused delete deleted: %v", got)
	}
	if got := usersJSON(t, e.server, "delete", aliceSub, "--yes"); got["deleted"] != aliceSub {
		t.Fatalf("delete --yes: %v", got)
	}
	out, _, err = runUsers(t, e.server, "", "get", aliceSub, "-o", "json")
	if err == nil || !strings.Contains(err.Error(), "not_found") || exitCode(err) == 0 || out != "" {
		t.Fatalf("get after delete: %v\n%s", err, out)
	}
	out, _, err = runUsers(t, e.server, "", "delete", bobSub, "-y", "-o", "table")
	if err != nil || out != "deleted "+bobSub+"\n" {
		t.Fatalf("delete -y -o table: %v\n%q", err, out)
	}
	if got := usersJSON(t, e.server, "find"); len(got["users"].([]any)) != 0 {
		t.Fatalf("users left after deleting both: %v", got)
	}
	out, _, err = runUsers(t, e.server, "", "disable", bobSub)
	if err == nil || !strings.Contains(err.Error(), "not_found") || out != "" {
		t.Fatalf("disable a deleted user: %v\n%s", err, out)
	}
}

// TestUsersCLIBadInput: the API's 400 reaches the user with its text; the
// CLI's own checks come before any request.
func TestUsersCLIBadInput(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"find", "--created-after", "yesterday"}, []string{"400", "invalid_request", "created_after must be an RFC 3339 time"}},
		{[]string{"find", "--created-before", "2024-13-01"}, []string{"400", "invalid_request", "created_before must be an RFC 3339 time"}},
		{[]string{"find", "--appid", "wxpeople"}, []string{"400", "invalid_request", "give openid too"}},
		{[]string{"find", "--limit", "0"}, []string{"400", "limit must be an integer from 1 to 1000"}},
		{[]string{"find", "--cursor", "nope", "--all"}, []string{"400", "cursor is not one this server issued"}},
		{[]string{"get", "no-such-user"}, []string{"404", "not_found", "No such user."}},
		{[]string{"enable", "no-such-user"}, []string{"404", "not_found"}},
		{[]string{"delete", "no-such-user", "--yes"}, []string{"404", "not_found"}},
		{[]string{"find", "-o", "yaml"}, []string{"--output must be table or json"}},
		{[]string{"get", ""}, []string{"subject (SUB) is empty"}},
	} {
		out, _, err := runUsers(t, srv, "", c.args...)
		if err == nil {
			t.Errorf("users %s: accepted\n%s", strings.Join(c.args, " "), out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("users %s: error %q lacks %q", strings.Join(c.args, " "), err, w)
			}
		}
		if out != "" || exitCode(err) != 1 {
			t.Errorf("users %s: printed %q, exit %d", strings.Join(c.args, " "), out, exitCode(err))
		}
	}

}

// TestUsersCLIConfirmDelete: at a terminal, delete goes ahead only when the
// subject is typed again.
func TestUsersCLIConfirmDelete(t *testing.T) {
	t.Parallel()
	const sub = "3f6c1a52-7d1e-4b8a-9c0f-2e5d4a1b6c7d"
	for _, c := range []struct {
		name, typed string
		ok          bool
	}{
		{"typed", sub + "\n", true},
		{"typed without newline", sub, true},
		{"typed with spaces", "  " + sub + " \r\n", true},
		{"other subject", "3f6c1a52\n", false},
		{"empty line", "\n", false},
		{"end of input", "", false},
	} {
		var prompt bytes.Buffer
		err := confirmDelete(strings.NewReader(c.typed), &prompt, sub, true)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && !strings.Contains(err.Error(), "nothing was deleted") {
			t.Errorf("%s: unclear error %v", c.name, err)
		}
		if !strings.Contains(prompt.String(), "ype the subject to confirm") || !strings.Contains(prompt.String(), sub) {
			t.Errorf("%s: prompt %q", c.name, prompt.String())
		}
	}
	var prompt bytes.Buffer
	if err := confirmDelete(strings.NewReader(sub+"\n"), &prompt, sub, false); err == nil || prompt.Len() != 0 {
		t.Errorf("not a terminal: %v, prompt %q", err, prompt.String())
	}
	if isTerminal(&bytes.Buffer{}) || isTerminal(nil) {
		t.Error("a buffer is a terminal")
	}
	if f, err := os.Open(os.DevNull); err == nil {
		defer f.Close()
		if isTerminal(f) {
			t.Error("/dev/null is a terminal")
		}
	}
}

// TestUsersCLITableCells: a user's own text (a nickname) cannot break a
// table row or send control characters to the terminal.
func TestUsersCLITableCells(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":               "-",
		"Alice W":        "Alice W",
		"小明":             "小明",
		"a\tb":           `"a\tb"`,
		"x\ny":           `"x\ny"`,
		"\x1b[31mred":    `"\x1b[31mred"`,
		"zero\u200bwide": `"zero\u200bwide"`,
	} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %s, want %s", in, got, want)
		}
	}
	if got := when("2026-01-02T03:04:05.123456Z"); got != "2026-01-02T03:04:05Z" {
		t.Errorf("when: %s", got)
	}
}
