package main

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMiniprogramSDK runs the mini-program SDK's own tests (Node's test
// runner, sdk/miniprogram/test) against this server and a fake WeChat, with
// a simulated wx object whose wx.login gets its codes from the fake. Two
// scan-to-login tickets, started by a browser here, are for the SDK's
// ticket/scan/approve/deny calls. One login, made here with the server's
// clock set 11 minutes back, is older than deleting an account allows
// (WXIDP_OLD_LOGIN): the SDK's deleteAccount must log in again and retry.
// Node.js (20 or later) must be installed: scripts/ensure-node.
func TestMiniprogramSDK(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found (install Node.js 20+, scripts/ensure-node): %v", err)
	}
	e := newScanEnv(t, nil)
	if status, body := e.adminJSON(t, "POST", "/admin/clients", testAdminToken, map[string]any{
		"client_id": "sdk", "token_endpoint_auth_method": "none", "scope": "openid offline_access wechat_data profile",
		"grant_types":  []string{"urn:wxidp:params:oauth:grant-type:wechat-code", "refresh_token"},
		"wechat_appid": e.appID, "wechat_app_secret": "secret-of-" + e.appID,
	}); status != http.StatusCreated {
		t.Fatalf("register: %d %v", status, body)
	}
	// The old login (fosite refuses an auth_time in its future, so the
	// clock goes back for the login, not forward for the deletion).
	const oldOpenID = "o-sdk-erase-old"
	const oldAge = 11 * time.Minute
	e.clock.advance(-oldAge)
	status, _, old := e.login(t, "sdk", e.wx.Login(e.appID, oldOpenID, ""), "scope", "openid offline_access profile")
	e.clock.advance(oldAge)
	if status != http.StatusOK {
		t.Fatalf("old login: %d %v", status, old)
	}
	// When the access token expires, in ms: its exp claim (expires_in is
	// counted from another clock than the server's).
	exp, _ := unverifiedClaims(t, old["access_token"].(string))["exp"].(float64)
	old["openid"] = oldOpenID
	old["expires_at"] = int64(exp) * 1000
	oldLogin, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	var tickets []string
	for range 2 {
		ticket, _ := e.startLogin(t, newBrowser(t), e.authRequest(t))
		tickets = append(tickets, ticket)
	}
	cmd := exec.Command(node, "--test", "--test-reporter=spec", "test/")
	cmd.Dir = "../../sdk/miniprogram"
	cmd.Env = append(cmd.Environ(), "WXIDP_ISSUER="+e.issuer, "WXIDP_FAKE_WECHAT="+e.wx.URL,
		"WXIDP_APPID="+e.appID, "WXIDP_CLIENT_ID=sdk", "WXIDP_TICKETS="+strings.Join(tickets, ","),
		"WXIDP_OLD_LOGIN="+string(oldLogin))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
