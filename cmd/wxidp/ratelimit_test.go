package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wxidp/wxidp/provider"
	"github.com/wxidp/wxidp/ratelimit"
)

// TestRateLimits: made-up codes from one address stop reaching WeChat once
// the per-source limit is spent; a confidential client's bucket is spent by
// its own authenticated requests; every refusal is a 429 with Retry-After
// and an RFC 6749 body.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	e := newMemoryWeChatEnv(t, func(c *serveConfig) {
		c.RateIP, c.RateIPBurst = 1, 5
		c.RateClient, c.RateClientBurst = 1.0/60, 2
	})
	e.miniProgram(t, "mp", "wxapp1")
	statuses := map[int]int{}
	for i := range 12 {
		status, h, body := e.login(t, "mp", "madeup"+strings.Repeat("x", i))
		statuses[status]++
		if status == 429 {
			checkRefusal(t, h, body)
		}
	}
	if statuses[429] < 5 || e.wx.Calls("/sns/jscode2session") > 7 {
		t.Fatalf("statuses %v, WeChat calls %d: the per-source limit did not hold", statuses, e.wx.Calls("/sns/jscode2session"))
	}

	// From another address: the per-source budget there is whole.
	svc := e.registerClient(t, map[string]any{"client_id": "svc"})
	from := clientFrom("127.0.0.2")
	cc := url.Values{"grant_type": {"client_credentials"}}
	for i, want := range []int{200, 200, 429} {
		status, h, body := formFrom(t, from, e.issuer+"/oauth2/token", cc, "svc", svc)
		if status != want {
			t.Fatalf("token request %d of svc: %d %v, want %d", i, status, body, want)
		}
		if status == 429 {
			checkRefusal(t, h, body)
			if ra, _ := strconv.Atoi(h.Get("Retry-After")); ra < 50 || ra > 60 {
				t.Fatalf("Retry-After %q; the client bucket refills in 60 s", h.Get("Retry-After"))
			}
		}
	}
}

// TestConfidentialClientNotLockedOutByOthers: with the default limits,
// wrong secrets naming a confidential client from 20 addresses lock out
// only those addresses (each after 20 failures), and the client itself
// keeps getting tokens. The audit trail records one lockout per address
// up to provider.LockoutEventsPerClient a minute; the rest are counted.
func TestConfidentialClientNotLockedOutByOthers(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t, func(c *serveConfig) { c.limitsConfig = defaultLimits() })
	secret := e.registerClient(t, map[string]any{"client_id": "svc"})
	cc := url.Values{"grant_type": {"client_credentials"}}
	var wg sync.WaitGroup
	for i := range 20 {
		from := clientFrom(fmt.Sprintf("127.0.1.%d", i+1))
		wg.Go(func() {
			for n := range 25 {
				status, h, body := formFrom(t, from, e.issuer+"/oauth2/token", cc, "svc", "wrong-secret-"+strconv.Itoa(n))
				switch {
				case n < 20 && status != 401:
					t.Errorf("failure %d from one address: %d %v, want 401", n, status, body)
				case n >= 20 && status != 429:
					t.Errorf("attempt %d after 20 failures: %d %v, want 429", n, status, body)
				case status == 429:
					checkRefusal(t, h, body)
				}
			}
		})
	}
	wg.Wait()
	for i := range 5 {
		if status, _, body := e.postToken(t, "svc", secret, cc); status != 200 {
			t.Fatalf("the real client, request %d: %d %v", i, status, body)
		}
	}
	var lockouts int
	if err := e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM audit_events WHERE type = 'auth.lockout' AND target = 'svc'`).Scan(&lockouts); err != nil {
		t.Fatal(err)
	}
	if lockouts != provider.LockoutEventsPerClient {
		t.Fatalf("%d lockout events from 20 addresses, want the per-client cap %d", lockouts, provider.LockoutEventsPerClient)
	}
}

// TestNATFirstLogins: with the default limits, 50 first logins at once
// from one address (a carrier NAT) all succeed.
func TestNATFirstLogins(t *testing.T) {
	t.Parallel()
	e := newMemoryWeChatEnv(t, func(c *serveConfig) { c.limitsConfig = defaultLimits() })
	e.miniProgram(t, "mp", "wxapp1")
	var wg sync.WaitGroup
	for i := range 50 {
		code := e.wx.Login("wxapp1", "o-nat-"+strconv.Itoa(i), "")
		wg.Go(func() {
			if status, _, body := e.login(t, "mp", code, "scope", "openid"); status != 200 {
				t.Errorf("first login %d behind one address: %d %v", i, status, body)
			}
		})
	}
	wg.Wait()
}

// TestDefaultLimitsSustainLogins: the default budgets that one login from
// one address spends (its source's and its app's) let 50 logins start at
// once and then 100 a second go on for a minute. Timed by a fake clock:
// the real server cannot be driven at that rate on a shared test machine.
func TestDefaultLimitsSustainLogins(t *testing.T) {
	t.Parallel()
	lim, err := newLimits(context.Background(), defaultLimits(), quietLog(), prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	th := ratelimit.New(ratelimit.Options{Now: func() time.Time { return now }})
	login := func(i int) {
		for _, l := range []ratelimit.Limit{lim.web.Source, lim.provider.WeChatAppID} {
			if d := th.Allow(context.Background(), l, "same"); !d.Allowed {
				t.Fatalf("login %d at %v refused by %s", i, now, d.Limit)
			}
		}
	}
	for i := range 50 {
		login(i)
	}
	for i := range 6000 {
		now = now.Add(10 * time.Millisecond)
		login(50 + i)
	}
}

// TestInvalidTokenFloodSparesValidUser: junk tokens at /userinfo from 20
// addresses spend those addresses' budgets, not the valid user's. Default
// limits, but for a smaller invalid-token budget, which 20 senders on a
// shared test machine could not otherwise outrun.
func TestInvalidTokenFloodSparesValidUser(t *testing.T) {
	t.Parallel()
	e := &lifecycleEnv{wechatEnv: newMemoryWeChatEnv(t, func(c *serveConfig) {
		c.limitsConfig = defaultLimits()
		c.RateInvalidToken, c.RateInvalidTokenBurst = 1, 20
	})}
	e.miniProgram(t, "mp", "wxapp1")
	at := e.loginTokens(t, "o-valid")["access_token"].(string)
	junk := at[:len(at)-8] + "AAAAAAAA" // a well-formed token whose signature fails
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	for i := range 20 {
		from := clientFrom(fmt.Sprintf("127.0.2.%d", i+1))
		wg.Go(func() {
			for range 80 {
				status, h, body := bearerFrom(t, from, e.issuer+"/userinfo", junk)
				switch status {
				case 401:
				case 429:
					checkRefusal(t, h, body)
					mu.Lock()
					refused++
					mu.Unlock()
				default:
					t.Errorf("junk token: %d %v", status, body)
				}
			}
		})
	}
	user := clientFrom("127.0.0.1")
	for i := range 15 {
		if status, _, body := bearerFrom(t, user, e.issuer+"/userinfo", at); status != 200 {
			t.Errorf("valid user's request %d during the flood: %d %v", i, status, body)
		}
	}
	wg.Wait()
	if refused == 0 {
		t.Fatal("1600 junk tokens and no source was throttled")
	}
	if status, _, body := bearerFrom(t, user, e.issuer+"/userinfo", at); status != 200 {
		t.Fatalf("valid user after the flood: %d %v", status, body)
	}
}

// TestWeChatAppIDBudget: past the appid's budget, logins are refused
// before WeChat is called, and other apps are unaffected.
func TestWeChatAppIDBudget(t *testing.T) {
	t.Parallel()
	e := newMemoryWeChatEnv(t, func(c *serveConfig) { c.RateWeChatAppID, c.RateWeChatAppIDBurst = 1.0/3600, 3 })
	e.miniProgram(t, "mp", "wxapp1")
	e.miniProgram(t, "mp2", "wxapp2")
	for i, want := range []int{200, 200, 200, 429, 429} {
		status, h, body := e.login(t, "mp", e.wx.Login("wxapp1", "o-"+strconv.Itoa(i), ""))
		if status != want {
			t.Fatalf("login %d: %d %v, want %d", i, status, body, want)
		}
		if status == 429 {
			checkRefusal(t, h, body)
		}
	}
	if n := e.wx.Calls("/sns/jscode2session"); n != 3 {
		t.Fatalf("WeChat was called %d times, want 3 (refusals come first)", n)
	}
	if status, _, body := e.login(t, "mp2", e.wx.Login("wxapp2", "o-other", "")); status != 200 {
		t.Fatalf("another app was limited: %d %v", status, body)
	}
}

// TestRedisDownFailsOpen: with Redis refusing connections, or accepting
// them and never answering, requests are served (per-process limits),
// quickly, never with a 500, and the Redis errors are counted.
func TestRedisDownFailsOpen(t *testing.T) {
	t.Parallel()
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hung.Close() })
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	for name, addr := range map[string]string{"closed": freeAddr(t), "hung": hung.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newMemoryWeChatEnv(t, func(c *serveConfig) {
				c.limitsConfig = defaultLimits()
				c.RedisURL = "redis://" + addr + "/0"
			})
			e.miniProgram(t, "mp", "wxapp1")
			secret := e.registerClient(t, map[string]any{"client_id": "svc"})
			began := time.Now()
			for i := range 3 {
				start := time.Now()
				status, _, body := e.postToken(t, "svc", secret, url.Values{"grant_type": {"client_credentials"}})
				if status != 200 {
					t.Fatalf("token %d with Redis %s: %d %v", i, name, status, body)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Fatalf("token %d took %v with Redis %s", i, d, name)
				}
			}
			if status, _, body := e.login(t, "mp", e.wx.Login("wxapp1", "o-1", "")); status != 200 {
				t.Fatalf("login with Redis %s: %d %v", name, status, body)
			}
			if status, _, _ := bearerFrom(t, http.DefaultClient, e.issuer+"/userinfo", "junk"); status != 401 {
				t.Fatalf("userinfo with a junk token and Redis %s: %d", name, status)
			}
			if n := metricValue(t, e.scrape(t), "wxidp_ratelimit_redis_errors_total"); n < 1 {
				t.Fatalf("wxidp_ratelimit_redis_errors_total = %v with Redis %s", n, name)
			}
			// One warning, then at most one per 10 s, however many requests.
			most := 1 + int(time.Since(began)/ratelimit.DefaultLogEvery)
			if n := strings.Count(e.logs.String(), "rate limits: Redis failed"); n < 1 || n > most {
				t.Fatalf("%d Redis warnings with Redis %s, want 1 to %d:\n%s", n, name, most, e.logs.String())
			}
		})
	}
}

// checkRefusal asserts the shape of a 429: Retry-After in whole seconds
// (at least 1) and an RFC 6749 error body.
func checkRefusal(t *testing.T, h http.Header, body map[string]any) {
	t.Helper()
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("429 with Retry-After %q", h.Get("Retry-After"))
	}
	if body["error"] != "temporarily_unavailable" || body["error_description"] == "" {
		t.Errorf("429 without an RFC 6749 body: %v", body)
	}
}

// clientFrom is an HTTP client whose connections come from ip (any of
// 127.0.0.0/8 works on loopback), so one test plays many addresses.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}}
}

// formFrom posts form with c, with HTTP Basic when user is set.
func formFrom(t *testing.T, c *http.Client, target string, form url.Values, user, pass string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	return sendJSON(t, c, req)
}

// bearerFrom calls a bearer endpoint with c.
func bearerFrom(t *testing.T, c *http.Client, target, token string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return sendJSON(t, c, req)
}

func sendJSON(t *testing.T, c *http.Client, req *http.Request) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &m) != nil {
		t.Errorf("%s answered non-JSON %q", req.URL.Path, raw)
	}
	return resp.StatusCode, resp.Header, m
}

// testRedis returns WXIDP_TEST_REDIS_URL (default the local Redis) and a
// fresh key prefix, so tests never share buckets. A Redis that does not
// answer fails the test: scripts/ensure-redis starts one.
func testRedis(t *testing.T) (url, prefix string) {
	t.Helper()
	url = os.Getenv("WXIDP_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	r, err := ratelimit.NewRedis(url, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Ping(context.Background()); err != nil {
		t.Fatalf("Redis at %s does not answer (%v): run scripts/ensure-redis or set WXIDP_TEST_REDIS_URL", url, err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return url, "wxidp-test:" + hex.EncodeToString(b) + ":"
}

// TestChunkedOversizedBody: the 64 KiB cap holds without Content-Length.
func TestChunkedOversizedBody(t *testing.T) {
	t.Parallel()
	srv := startServer(t, memoryConfig())
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
