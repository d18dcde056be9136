package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// runClients runs `wxidp clients ARGS` in-process against srv, with stdin as
// standard input, and returns what it printed.
func runClients(t *testing.T, srv *server, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append(append([]string{"clients"}, args...), "--endpoint", srv.admin, "--token", testAdminToken))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// writeSecret writes secret (with the newline an editor or echo adds) to a
// private file.
func writeSecret(t *testing.T, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func clientCount(t *testing.T, srv *server) int {
	t.Helper()
	status, list := srv.adminJSON(t, "GET", "/admin/clients", testAdminToken, nil)
	if status != 200 {
		t.Fatalf("list clients: %d %v", status, list)
	}
	return len(list["clients"].([]any))
}

// TestClientsCLIIgnoresEnvironment: with every WXIDP_CLIENT_* variable the
// CLI ever read exported, `clients update --name X` changes only the name,
// and the secret still authenticates. Not parallel: it sets the environment.
func TestClientsCLIIgnoresEnvironment(t *testing.T) {
	srv := startServer(t, testConfig(migratedDB(t)))
	own := strings.Repeat("o", 40)
	srv.registerClient(t, map[string]any{
		"client_id": "demo", "client_name": "Demo", "scope": "read write", "client_secret": own,
		"audience": []string{"https://api.example.com"}, "redirect_uris": []string{"https://app.example.com/cb"},
	})
	_, before := srv.adminJSON(t, "GET", "/admin/clients/demo", testAdminToken, nil)

	for k, v := range map[string]string{
		"WXIDP_CLIENT_ID": "other", "WXIDP_CLIENT_NAME": "FromEnv", "WXIDP_CLIENT_SCOPE": "read",
		"WXIDP_CLIENT_GRANT_TYPES": "refresh_token", "WXIDP_CLIENT_AUDIENCE": "https://evil.example.com",
		"WXIDP_CLIENT_REDIRECT_URIS": "https://evil.example.com/cb", "WXIDP_CLIENT_AUTH_METHOD": "client_secret_post",
		"WXIDP_CLIENT_SECRET": strings.Repeat("e", 40), "WXIDP_CLIENT_WECHAT_APPID": "wxenv",
		"WXIDP_WECHAT_APP_SECRET": "envsecret", "WXIDP_CLIENT_SECRET_FILE": writeSecret(t, strings.Repeat("f", 40)),
		"WXIDP_CLIENT_WECHAT_APP_SECRET_FILE": writeSecret(t, "envsecret"),
	} {
		t.Setenv(k, v)
	}
	if out, err := runClients(t, srv, "", "update", "demo", "--name", "Renamed"); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	_, after := srv.adminJSON(t, "GET", "/admin/clients/demo", testAdminToken, nil)
	if after["client_name"] != "Renamed" {
		t.Fatalf("name not changed: %v", after)
	}
	for k, v := range before {
		if k != "client_name" && k != "updated_at" && !reflect.DeepEqual(after[k], v) {
			t.Errorf("%s changed from %v to %v", k, v, after[k])
		}
	}
	if status, _, body := srv.postToken(t, "demo", own, url.Values{"grant_type": {"client_credentials"}, "scope": {"write"}}); status != 200 {
		t.Fatalf("secret or scope lost to the environment: %d %v", status, body)
	}

	// create, too, takes nothing from the environment: a generated id and
	// secret, the default grant, no scope.
	out, err := runClients(t, srv, "", "create", "--name", "Plain")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	var created map[string]any
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatal(err)
	}
	if created["client_id"] == "other" || created["scope"] != "" || len(created["audience"].([]any)) != 0 ||
		len(created["redirect_uris"].([]any)) != 0 || created["token_endpoint_auth_method"] != "client_secret_basic" ||
		created["client_secret"] == strings.Repeat("e", 40) || created["client_secret"] == strings.Repeat("f", 40) {
		t.Fatalf("create took fields from the environment: %v", created)
	}
}

// TestClientsCLISecretFiles: secrets come from --secret-file (a path or -
// for standard input), never from a flag value.
func TestClientsCLISecretFiles(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	first, second := strings.Repeat("1", 40), strings.Repeat("2", 40)

	if out, err := runClients(t, srv, "", "create", "--id", "svc", "--scope", "read", "--secret-file", writeSecret(t, first)); err != nil {
		t.Fatalf("create with --secret-file: %v\n%s", err, out)
	}
	if status, _, body := srv.postToken(t, "svc", first, url.Values{"grant_type": {"client_credentials"}}); status != 200 {
		t.Fatalf("secret from file: %d %v", status, body)
	}

	if out, err := runClients(t, srv, second+"\n", "update", "svc", "--secret-file", "-"); err != nil {
		t.Fatalf("update with --secret-file -: %v\n%s", err, out)
	}
	if status, _, _ := srv.postToken(t, "svc", first, url.Values{"grant_type": {"client_credentials"}}); status != 401 {
		t.Fatalf("replaced secret still works: %d", status)
	}
	if status, _, body := srv.postToken(t, "svc", second, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}); status != 200 {
		t.Fatalf("secret from stdin: %d %v", status, body)
	}

	// A public mini-program client with its app secret from a file.
	out, err := runClients(t, srv, "", "create", "--id", "mp", "--auth-method", "none", "--wechat-appid", "wxmini",
		"--wechat-app-secret-file", writeSecret(t, "app-secret"))
	if err != nil || !strings.Contains(out, `"wechat_app_secret_set": true`) || strings.Contains(out, "app-secret") {
		t.Fatalf("create with --wechat-app-secret-file: %v\n%s", err, out)
	}

	n := clientCount(t, srv)
	for name, args := range map[string][]string{
		"secret flag":            {"create", "--id", "leak", "--secret", first},
		"app secret flag":        {"create", "--id", "leak", "--auth-method", "none", "--wechat-appid", "wxleak", "--wechat-app-secret", "s"},
		"update secret flag":     {"update", "svc", "--secret", first},
		"missing file":           {"create", "--id", "leak", "--secret-file", filepath.Join(t.TempDir(), "none")},
		"empty file":             {"create", "--id", "leak", "--secret-file", writeSecret(t, "")},
		"empty stdin":            {"update", "svc", "--secret-file", "-"},
		"both from stdin":        {"create", "--id", "leak", "--auth-method", "none", "--wechat-appid", "wxleak", "--secret-file", "-", "--wechat-app-secret-file", "-"},
		"update cannot move id":  {"update", "svc", "--id", "moved"},
		"update with bad file":   {"update", "svc", "--name", "Half", "--secret-file", filepath.Join(t.TempDir(), "none")},
		"redirect URI user-info": {"create", "--id", "leak", "--redirect-uri", "http://localhost@evil.com/"},
	} {
		out, err := runClients(t, srv, "", args...)
		if err == nil {
			t.Errorf("%s: accepted\n%s", name, out)
			continue
		}
		if strings.Contains(err.Error(), first) {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
	if got := clientCount(t, srv); got != n {
		t.Fatalf("refused commands created clients: %d, want %d", got, n)
	}
	if _, got := srv.adminJSON(t, "GET", "/admin/clients/svc", testAdminToken, nil); got["client_name"] != "" {
		t.Fatalf("an update with a bad secret file changed the client: %v", got)
	}
	if status, _, _ := srv.postToken(t, "svc", second, url.Values{"grant_type": {"client_credentials"}}); status != 200 {
		t.Fatalf("refused commands changed the secret: %d", status)
	}

	for _, sub := range []string{"create", "update"} {
		var help bytes.Buffer
		root := newRootCmd()
		root.SetOut(&help)
		root.SetArgs([]string{"clients", sub, "--help"})
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"--secret-file", "--wechat-app-secret-file", "standard input"} {
			if !strings.Contains(help.String(), want) {
				t.Errorf("clients %s --help lacks %q:\n%s", sub, want, help.String())
			}
		}
		if strings.Contains(help.String(), "WXIDP_CLIENT") || strings.Contains(help.String(), "--secret string") {
			t.Errorf("clients %s --help still offers env or value secrets:\n%s", sub, help.String())
		}
	}
}

// TestAdminRefusesBadRedirectURIs: the admin API answers 400
// invalid_redirect_uri (RFC 7591 §3.2.2) and registers nothing.
func TestAdminRefusesBadRedirectURIs(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	srv.registerClient(t, map[string]any{"client_id": "app", "redirect_uris": []string{"https://app.example.com/cb"}})
	for _, uri := range []string{
		"http://localhost.evil.com/cb", "http://localhost@evil.com/", "https://",
		"https://example.com/cb#frag", "javascript:alert(1)", "http://example.com/cb",
	} {
		status, body := srv.adminJSON(t, "POST", "/admin/clients", testAdminToken, map[string]any{
			"client_id": "evil", "redirect_uris": []string{"https://ok.example.com/cb", uri},
		})
		if status != 400 || body["error"] != "invalid_redirect_uri" {
			t.Errorf("POST %q: %d %v", uri, status, body)
		}
		status, body = srv.adminJSON(t, "PUT", "/admin/clients/app", testAdminToken, map[string]any{"redirect_uris": []string{uri}})
		if status != 400 || body["error"] != "invalid_redirect_uri" {
			t.Errorf("PUT %q: %d %v", uri, status, body)
		}
	}
	if status, _ := srv.adminJSON(t, "GET", "/admin/clients/evil", testAdminToken, nil); status != 404 {
		t.Fatalf("refused client exists: %d", status)
	}
	_, got := srv.adminJSON(t, "GET", "/admin/clients/app", testAdminToken, nil)
	if uris, _ := got["redirect_uris"].([]any); len(uris) != 1 || uris[0] != "https://app.example.com/cb" {
		t.Fatalf("refused update changed redirect_uris: %v", got)
	}
	if n := clientCount(t, srv); n != 1 {
		t.Fatalf("%d clients, want 1", n)
	}

	// The CLI keeps a URI byte for byte, commas included.
	const withComma = "https://app.example.com/cb?a=1,2"
	if out, err := runClients(t, srv, "", "create", "--id", "comma", "--redirect-uri", withComma); err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	_, got = srv.adminJSON(t, "GET", "/admin/clients/comma", testAdminToken, nil)
	if uris, _ := got["redirect_uris"].([]any); len(uris) != 1 || uris[0] != withComma {
		t.Fatalf("redirect_uris %v, want [%s]", got["redirect_uris"], withComma)
	}
}

// TestClientsCLIScanLoginFields: the scan-to-login client fields go through
// the CLI and the admin API both ways, and `clients update` keeps them
// unless their flags are given.
func TestClientsCLIScanLoginFields(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	get := func(id string) map[string]any {
		t.Helper()
		status, got := srv.adminJSON(t, "GET", "/admin/clients/"+id, testAdminToken, nil)
		if status != 200 {
			t.Fatalf("GET %s: %d %v", id, status, got)
		}
		return got
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := runClients(t, srv, "", args...); err != nil {
			t.Fatalf("clients %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	checkURIs := func(id string, want ...string) {
		t.Helper()
		got, _ := get(id)["post_logout_redirect_uris"].([]any)
		if len(got) != len(want) {
			t.Fatalf("%s: post_logout_redirect_uris = %v, want %q", id, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: post_logout_redirect_uris = %v, want %q", id, got, want)
			}
		}
	}

	const bye, byeComma = "https://web.example.com/bye", "https://web.example.com/?a=1,2"
	run("create", "--id", "web", "--grant-type", "authorization_code", "--redirect-uri", "https://web.example.com/cb",
		"--post-logout-redirect-uri", bye, "--post-logout-redirect-uri", byeComma)
	checkURIs("web", bye, byeComma)
	run("create", "--id", "mp", "--auth-method", "none", "--wechat-appid", "wxmini",
		"--wechat-app-secret-file", writeSecret(t, "app-secret"), "--wechat-login-page", "pages/scan/index")
	if got := get("mp")["wechat_login_page"]; got != "pages/scan/index" {
		t.Fatalf("wechat_login_page = %v", got)
	}

	run("update", "web", "--name", "Web")
	run("update", "mp", "--name", "Mini")
	checkURIs("web", bye, byeComma)
	if got := get("mp"); got["wechat_login_page"] != "pages/scan/index" || got["client_name"] != "Mini" {
		t.Fatalf("update --name lost wechat_login_page: %v", got)
	}

	run("update", "web", "--post-logout-redirect-uri", "https://web.example.com/new")
	checkURIs("web", "https://web.example.com/new")
	if out, err := runClients(t, srv, "", "update", "mp", "--wechat-login-page", "/pages/scan/index"); err == nil ||
		!strings.Contains(err.Error(), "invalid_client_metadata") {
		t.Fatalf("update with a bad page: %v\n%s", err, out)
	}
	run("update", "mp", "--wechat-login-page", "")
	if got, ok := get("mp")["wechat_login_page"]; ok && got != "" {
		t.Fatalf("wechat_login_page after clearing it = %v", got)
	}
}
