package main

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/grants"
)

// TestConcurrentWrongSecrets: 100 simultaneous wrong secrets for one
// (client, source) pair reach authentication at most 20 times (the
// default budget, plus one per 3 s refill while they run), the rest are
// refused with 429, and the lockout is recorded once, whether the budget
// lives in this process or in Redis.
func TestConcurrentWrongSecrets(t *testing.T) {
	t.Parallel()
	redisURL, prefix := testRedis(t)
	for name, shared := range map[string]bool{"memory": false, "redis": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newWeChatEnv(t, func(c *serveConfig) {
				c.limitsConfig = defaultLimits()
				if shared {
					// A generous timeout: 100 requests at once on a shared
					// test machine must not time Redis out, which would fall
					// back to per-process buckets (fail open) by design.
					c.RedisURL, c.RedisPrefix, c.RedisTimeout = redisURL, prefix+name+":", 5*time.Second
				}
			})
			secret := e.registerClient(t, map[string]any{"client_id": "svc"})
			cc := url.Values{"grant_type": {"client_credentials"}}
			from := clientFrom("127.0.4.1")
			var mu sync.Mutex
			counts := map[int]int{}
			var wg sync.WaitGroup
			start := time.Now()
			for range 100 {
				wg.Go(func() {
					status, h, body := formFrom(t, from, e.issuer+"/oauth2/token", cc, "svc", "wrong-secret")
					if status == 429 {
						checkRefusal(t, h, body)
					}
					mu.Lock()
					counts[status]++
					mu.Unlock()
				})
			}
			wg.Wait()
			refills := int(time.Since(start) / (3 * time.Second))
			if counts[401] < 20 || counts[401] > 20+refills || counts[401]+counts[429] != 100 {
				t.Fatalf("100 concurrent wrong secrets: %v, want at most 20 (+%d refilled) × 401, the rest 429", counts, refills)
			}
			if status, _, body := formFrom(t, clientFrom("127.0.4.2"), e.issuer+"/oauth2/token", cc, "svc", secret); status != 200 {
				t.Fatalf("the client from its own address: %d %v", status, body)
			}
			if n := countAudit(t, e, "auth.lockout"); n != 1 {
				t.Fatalf("%d lockout events, want 1", n)
			}
			if n := metricValue(t, e.scrape(t), "wxidp_ratelimit_redis_errors_total"); n != 0 {
				t.Fatalf("%v Redis errors: the budget was not Redis's alone", n)
			}
		})
	}
}

// TestOverlongClientID: a client_id longer than registration allows is a
// 400 invalid_request before any budget, lookup or audit row.
func TestOverlongClientID(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t, func(c *serveConfig) {
		c.limitsConfig = defaultLimits()
		c.AuthFailures = 1
	})
	long := strings.Repeat("c", 129)
	cc := url.Values{"grant_type": {"client_credentials"}}
	from := clientFrom("127.0.4.3")
	for i := range 3 {
		for _, path := range []string{"/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"} {
			form := cc
			if path != "/oauth2/token" {
				form = url.Values{"token": {"x"}}
			}
			status, _, body := formFrom(t, from, e.issuer+path, form, long, "wrong")
			if status != 400 || body["error"] != "invalid_request" {
				t.Fatalf("%s with a %d-byte client_id, attempt %d: %d %v, want 400 invalid_request", path, len(long), i, status, body)
			}
		}
	}
	if n := countAudit(t, e, "auth.lockout"); n != 0 {
		t.Fatalf("%d lockout events for a client_id no client can have", n)
	}
}

func countAudit(t *testing.T, e *wechatEnv, typ string) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE type = $1`, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStaleTokensSpareNATUser: tokens this server signed that are no
// longer valid (revoked here; expired ones take the same path) answer 401
// but spend no one's invalid-token budget, so a valid user behind the same
// address keeps /userinfo; forged tokens from that address still do.
func TestStaleTokensSpareNATUser(t *testing.T) {
	t.Parallel()
	e := &lifecycleEnv{wechatEnv: newMemoryWeChatEnv(t, func(c *serveConfig) {
		c.limitsConfig = defaultLimits()
		c.RateInvalidToken, c.RateInvalidTokenBurst = 1.0/3600, 3
	})}
	e.miniProgram(t, "mp", "wxapp1")
	nat := clientFrom("127.0.5.1")
	var stale []string
	for i := range 6 {
		at := e.loginTokens(t, "o-stale-"+strconv.Itoa(i))["access_token"].(string)
		form := url.Values{"token": {at}, "client_id": {"mp"}}
		if status, _, body := formFrom(t, nat, e.issuer+"/oauth2/revoke", form, "", ""); status != 200 {
			t.Fatalf("revoke: %d %v", status, body)
		}
		stale = append(stale, at)
	}
	valid := e.loginTokens(t, "o-valid")["access_token"].(string)
	for i, at := range append(stale, stale...) {
		if status, _, body := bearerFrom(t, nat, e.issuer+"/userinfo", at); status != 401 {
			t.Fatalf("stale token %d: %d %v, want 401", i, status, body)
		}
	}
	if status, _, body := bearerFrom(t, nat, e.issuer+"/userinfo", valid); status != 200 {
		t.Fatalf("valid user behind the address after 12 stale tokens: %d %v", status, body)
	}
	forged := valid[:len(valid)-8] + "AAAAAAAA"
	statuses := map[int]int{}
	for range 5 {
		status, _, _ := bearerFrom(t, nat, e.issuer+"/userinfo", forged)
		statuses[status]++
	}
	if statuses[401] != 3 || statuses[429] != 2 {
		t.Fatalf("5 forged tokens: %v, want 3 × 401 then 429", statuses)
	}
}

// TestBadCodesPerSource: made-up WeChat codes from one address are
// refused with 429 once that address's rejected-code budget is spent,
// before they reach WeChat or the appid's budget, so users elsewhere keep
// logging in to the same mini-program.
func TestBadCodesPerSource(t *testing.T) {
	t.Parallel()
	e := newMemoryWeChatEnv(t, func(c *serveConfig) {
		c.limitsConfig = defaultLimits()
		c.RateWeChatAppID, c.RateWeChatAppIDBurst = 1.0/3600, 15
		c.RateBadCodes, c.RateBadCodesBurst = 1.0/3600, 5
	})
	e.miniProgram(t, "mp", "wxapp1")
	login := func(c *http.Client, code string) (int, http.Header, map[string]any) {
		form := url.Values{"grant_type": {grants.WeChatCode}, "client_id": {"mp"}, "code": {code}}
		return formFrom(t, c, e.issuer+"/oauth2/token", form, "", "")
	}
	attacker := clientFrom("127.0.6.1")
	statuses := map[int]int{}
	for i := range 20 {
		status, h, body := login(attacker, "madeup-"+strconv.Itoa(i))
		statuses[status]++
		if status == 429 {
			checkRefusal(t, h, body)
		}
	}
	if statuses[400] != 5 || statuses[429] != 15 || e.wx.Calls("/sns/jscode2session") != 5 {
		t.Fatalf("20 made-up codes: %v, %d WeChat calls; want 5 rejected by WeChat, then 429", statuses, e.wx.Calls("/sns/jscode2session"))
	}
	user := clientFrom("127.0.6.2")
	for i := range 10 {
		if status, _, body := login(user, e.wx.Login("wxapp1", "o-user-"+strconv.Itoa(i), "")); status != 200 {
			t.Fatalf("login %d from another address: %d %v (the appid budget was drained)", i, status, body)
		}
	}
}
