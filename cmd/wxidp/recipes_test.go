package main

import (
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestResourceServerRecipes runs each resource-server recipe — Go
// (cmd/example-resource-server, go-oidc), Node (sdk/resource-servers/node,
// jose) and Python (sdk/resource-servers/python, Flask and PyJWT) — against
// a server whose signing key rotates, and checks each accepts exactly the
// access tokens it should: typ at+jwt, our issuer, its audience, unexpired
// (a token minted with the server's clock an hour back),
// with the scope it requires, signed by a key published before or after the
// rotation.
func TestResourceServerRecipes(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	e := newWeChatEnv(t, func(cfg *serveConfig) {
		fastKeys(cfg)
		cfg.AccessTokenTTL, cfg.IDTokenTTL = time.Minute, time.Minute
		cfg.now = clock.now
	})
	e.miniProgram(t, "mp", "wxapp1") // its tokens say aud "mp": the recipes' audience
	svc := e.registerClient(t, map[string]any{"client_id": "svc", "scope": "read", "audience": []string{"mp"}})
	noScope := e.registerClient(t, map[string]any{"client_id": "svc-plain", "scope": "write", "audience": []string{"mp"}})
	other := e.registerClient(t, map[string]any{"client_id": "svc-other", "scope": "read", "audience": []string{"another-api"}})
	token := func(client, secret, scope string) string {
		t.Helper()
		status, _, body := e.postToken(t, client, secret, url.Values{"grant_type": {"client_credentials"}, "scope": {scope}})
		if status != http.StatusOK {
			t.Fatalf("token for %s: %d %v", client, status, body)
		}
		return body["access_token"].(string)
	}
	_, _, login := e.login(t, "mp", e.wx.Login("wxapp1", "o-recipe", ""), "scope", "openid")
	idToken, _ := login["id_token"].(string)
	// A mini-program login an hour ago: its access token (aud mp, scope
	// openid) expired 59 minutes ago. Were expiry not checked, the answer
	// would be 403 for the missing scope.
	clock.advance(-time.Hour)
	status, _, old := e.login(t, "mp", e.wx.Login("wxapp1", "o-recipe", ""), "scope", "openid")
	clock.advance(time.Hour)
	if status != http.StatusOK {
		t.Fatalf("login an hour ago: %d %v", status, old)
	}
	expired := old["access_token"].(string)
	before := token("svc", svc, "read")

	bin := filepath.Join(t.TempDir(), "rs")
	if out, err := exec.Command("go", "build", "-o", bin, "../example-resource-server").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	recipes := map[string]func(addr string) *exec.Cmd{
		"go": func(addr string) *exec.Cmd {
			return exec.Command(bin, "-issuer", e.issuer, "-audience", "mp", "-addr", addr, "-scope", "read")
		},
		"node": func(addr string) *exec.Cmd {
			c := exec.Command("node", "server.mjs", e.issuer, "mp", addr, "read")
			c.Dir = "../../sdk/resource-servers/node"
			return c
		},
		"python": func(addr string) *exec.Cmd {
			c := exec.Command("/usr/bin/python3", "server.py", e.issuer, "mp", addr, "read")
			c.Dir = "../../sdk/resource-servers/python"
			return c
		},
	}
	addrs := map[string]string{}
	for name, mk := range recipes {
		addrs[name] = freeAddr(t)
		cmd := mk(addrs[name])
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s recipe: %v", name, err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	call := func(name, token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addrs[name]+"/hello", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				return resp.StatusCode
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s recipe unreachable: %v", name, err)
			}
		}
	}

	cases := map[string]struct {
		token string
		want  int
	}{
		"valid":                 {before, http.StatusOK},
		"expired":               {expired, http.StatusUnauthorized},
		"the same kind, fresh":  {login["access_token"].(string), http.StatusForbidden},
		"without the scope":     {token("svc-plain", noScope, "write"), http.StatusForbidden},
		"for another audience":  {token("svc-other", other, "read"), http.StatusUnauthorized},
		"an ID token (typ JWT)": {idToken, http.StatusUnauthorized},
		"garbage":               {"garbage", http.StatusUnauthorized},
		"none":                  {"", http.StatusUnauthorized},
		"tampered":              {before[:len(before)-4] + "AAAA", http.StatusUnauthorized},
	}
	for name := range recipes {
		for what, tc := range cases {
			if got := call(name, tc.token); got != tc.want {
				t.Errorf("%s recipe, %s token: %d, want %d", name, what, got, tc.want)
			}
		}
	}

	for e.rotate(t) != http.StatusOK {
		time.Sleep(200 * time.Millisecond)
	}
	after := token("svc", svc, "read")
	if kidOf(t, after) == kidOf(t, before) {
		t.Fatal("no new key after the rotation")
	}
	for name := range recipes {
		for what, tok := range map[string]string{"before": before, "after": after} {
			if got := call(name, tok); got != http.StatusOK {
				t.Errorf("%s recipe, token from %s the rotation: %d", name, what, got)
			}
		}
	}
}
