package main

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestRateLimits: made-up codes from one address or for one client stop
// reaching WeChat once the limits are spent.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t, func(c *serveConfig) {
		c.RateIP, c.RateIPBurst = 1, 5
	})
	e.miniProgram(t, "mp", "wxapp1")
	statuses := map[int]int{}
	for i := range 12 {
		status, h, body := e.login(t, "mp", "madeup"+strings.Repeat("x", i))
		statuses[status]++
		if status == 429 && (h.Get("Retry-After") == "" || body["error"] != "temporarily_unavailable") {
			t.Fatalf("429 without Retry-After or RFC 6749 body: %v", body)
		}
	}
	if statuses[429] < 5 || e.wx.Calls("/sns/jscode2session") > 7 {
		t.Fatalf("statuses %v, WeChat calls %d: the per-IP limit did not hold", statuses, e.wx.Calls("/sns/jscode2session"))
	}

	c := newWeChatEnv(t, func(c *serveConfig) { c.RateClient, c.RateClientBurst = 1, 3 })
	c.miniProgram(t, "mp", "wxapp1")
	limited := 0
	for i := range 8 {
		if status, _, _ := c.login(t, "mp", "madeup"+strings.Repeat("y", i)); status == 429 {
			limited++
		}
	}
	if limited < 4 {
		t.Fatalf("per-client limit: only %d of 8 limited", limited)
	}
	// Other clients are not affected by mp's bucket.
	secret := c.registerClient(t, map[string]any{"client_id": "svc"})
	if status, _, body := c.postToken(t, "svc", secret, url.Values{"grant_type": {"client_credentials"}}); status != 200 {
		t.Fatalf("another client was limited: %d %v", status, body)
	}
}

// TestChunkedOversizedBody: the 64 KiB cap holds without Content-Length.
func TestChunkedOversizedBody(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	body := io.MultiReader(strings.NewReader("grant_type=client_credentials&pad="), strings.NewReader(strings.Repeat("a", 70<<10)))
	req, _ := http.NewRequest(http.MethodPost, srv.issuer+"/oauth2/token", io.NopCloser(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.ContentLength = -1 // forces chunked transfer encoding
	if status, out := do(t, req); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d %s, want 413", status, out)
	}
	req, _ = http.NewRequest(http.MethodPost, srv.admin+"/admin/clients", io.NopCloser(io.MultiReader(
		strings.NewReader(`{"client_name":"`), strings.NewReader(strings.Repeat("a", 70<<10)), strings.NewReader(`"}`))))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.ContentLength = -1
	if status, out := do(t, req); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("admin: got %d %s, want 413", status, out)
	}
}
