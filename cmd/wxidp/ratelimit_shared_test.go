package main

import (
	"net/url"
	"os"
	"testing"
)

// TestTwoProcessesShareFailedAuthBudget: two real `wxidp serve` processes
// on one Redis enforce one failed-authentication budget: wrong secrets
// from one address, alternating between them, are refused after 20 in
// all (each process alone would allow 20 of its own), while the client
// still gets tokens from another address at both.
func TestTwoProcessesShareFailedAuthBudget(t *testing.T) {
	t.Parallel()
	redisURL, prefix := testRedis(t)
	bin := buildWxidp(t)
	env := append(os.Environ(),
		"WXIDP_DATABASE_URL="+migratedDB(t), "WXIDP_SECRETS="+testSecret, "WXIDP_ADMIN_TOKEN="+testAdminToken,
		"WXIDP_ISSUER=http://wxidp.test", "WXIDP_PUBLIC_ADDR=127.0.0.1:0", "WXIDP_ADMIN_ADDR=127.0.0.1:0",
		"WXIDP_REDIS_URL="+redisURL, "WXIDP_REDIS_PREFIX="+prefix)
	a, b := startProcess(t, bin, env), startProcess(t, bin, env)
	secret := a.registerClient(t, map[string]any{"client_id": "svc"})
	cc := url.Values{"grant_type": {"client_credentials"}}

	attacker := clientFrom("127.0.3.1")
	counts := map[int]int{}
	for i := range 30 {
		s := a
		if i%2 == 1 {
			s = b
		}
		status, h, body := formFrom(t, attacker, s.issuer+"/oauth2/token", cc, "svc", "wrong-secret")
		counts[status]++
		if status == 429 {
			checkRefusal(t, h, body)
		}
	}
	if counts[401] != 20 || counts[429] != 10 {
		t.Fatalf("30 wrong secrets across two processes: %v, want 20 × 401 then 10 × 429", counts)
	}
	client := clientFrom("127.0.3.2")
	for _, s := range []*server{a, b} {
		if status, _, body := formFrom(t, client, s.issuer+"/oauth2/token", cc, "svc", secret); status != 200 {
			t.Fatalf("the client from its own address at %s: %d %v", s.issuer, status, body)
		}
	}
}
