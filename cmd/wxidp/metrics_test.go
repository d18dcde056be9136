package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wxidp/wxidp/provider/grants"
)

// scrape returns the admin listener's /metrics text.
func (s *server) scrape(t *testing.T) string {
	t.Helper()
	status, out := s.adminRaw(t, http.MethodGet, "/metrics", testAdminToken, "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, out)
	}
	return string(out)
}

// httpSeries counts the distinct series of the HTTP metrics: each sample
// line, with a histogram's buckets, sum and count taken as one series.
func httpSeries(exposition string) int {
	seen := map[string]bool{}
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, "wxidp_http_") {
			continue
		}
		name, labels, _ := strings.Cut(line, "{")
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suffix)
		}
		labels, _, _ = strings.Cut(labels, "}")
		var kept []string
		for _, l := range strings.Split(labels, ",") {
			if !strings.HasPrefix(l, "le=") {
				kept = append(kept, l)
			}
		}
		seen[name+"{"+strings.Join(kept, ",")+"}"] = true
	}
	return len(seen)
}

// metricValue returns the value of the series written exactly as series (labels
// in the alphabetical order of the exposition format).
func metricValue(t *testing.T, exposition, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in:\n%s", series, exposition)
	return 0
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Clients choose methods and paths freely; neither may become a label value.
func TestMetricsCardinalityBounded(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	before := httpSeries(srv.scrape(t))

	const requests, workers = 5000, 8
	routes := []string{"/oauth2/token", "/userinfo", "/healthz"}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < requests; i += workers {
				// Every third request names a real route (405 under its
				// pattern), the others a random path (404, unmatched).
				path := "/" + randomHex(t, 8) + "/" + randomHex(t, 4)
				if i%3 == 0 {
					path = routes[i%len(routes)]
				}
				req, err := http.NewRequest("X"+strings.ToUpper(randomHex(t, 6)), srv.issuer+path, nil)
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	client.CloseIdleConnections()

	out := srv.scrape(t)
	// At most one counter and one histogram per route named plus unmatched.
	if added := httpSeries(out) - before; added > 2*(len(routes)+1) {
		t.Fatalf("%d requests with invented methods added %d HTTP series:\n%s", requests, added, out)
	}
	if n := metricValue(t, out, `wxidp_http_requests_total{code="4xx",listener="public",method="other",route="unmatched"}`); n < requests/2 {
		t.Errorf("unmatched requests counted %v, want > %d", n, requests/2)
	}
	metricValue(t, out, `wxidp_http_requests_total{code="4xx",listener="public",method="other",route="/oauth2/token"}`)
}

// Each application metric appears, with its fixed labels, after the action
// it counts.
func TestMetricsApplication(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxmetrics1")
	if status, _, body := e.login(t, "mp", e.wx.Login("wxmetrics1", "openid-m", "")); status != http.StatusOK {
		t.Fatalf("login: %d %v", status, body)
	}
	if status, _, _ := e.login(t, "mp", "not-a-code"); status != http.StatusBadRequest {
		t.Fatalf("login with a bad code: %d", status)
	}
	e.postToken(t, "nobody", "x", url.Values{"grant_type": {"client_credentials"}})
	e.postToken(t, "", "", url.Values{"grant_type": {"urn:invented:" + randomHex(t, 8)}, "client_id": {"mp"}})

	out := e.scrape(t)
	for series, want := range map[string]float64{
		`wxidp_tokens_issued_total{grant="` + grants.WeChatCode + `",outcome="issued"}`:         1,
		`wxidp_tokens_issued_total{grant="` + grants.WeChatCode + `",outcome="invalid_grant"}`:  1,
		`wxidp_tokens_issued_total{grant="client_credentials",outcome="invalid_client"}`:        1,
		`wxidp_tokens_issued_total{grant="other",outcome="unsupported_grant_type"}`:             1,
		`wxidp_wechat_request_duration_seconds_count{errcode="0",operation="code2session"}`:     1,
		`wxidp_wechat_request_duration_seconds_count{errcode="40029",operation="code2session"}`: 1,
	} {
		if got := metricValue(t, out, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	for _, series := range []string{
		"wxidp_db_pool_max_connections", "wxidp_db_pool_total_connections", "wxidp_db_pool_acquires_total",
		`wxidp_signing_key_age_seconds{state="active"}`, `wxidp_signing_key_age_seconds{state="next"}`,
	} {
		if got := metricValue(t, out, series); got <= 0 {
			t.Errorf("%s = %v, want > 0", series, got)
		}
	}
	for _, series := range []string{"wxidp_db_pool_acquired_connections", "wxidp_db_pool_idle_connections",
		"wxidp_db_pool_acquire_duration_seconds_total", "wxidp_db_pool_empty_acquires_total", "wxidp_db_pool_canceled_acquires_total"} {
		metricValue(t, out, series) // present
	}
}
