package main

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h, a, b histogram
	exact := make([]time.Duration, 0, 20000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		// Log-uniform from 50 ns to 5 s, the spread of real latencies.
		d := time.Duration(math.Exp(math.Log(50) + rng.Float64()*math.Log(1e8)))
		exact = append(exact, d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	h.merge(&a)
	h.merge(&b)
	slices.Sort(exact)
	if h.n != uint64(len(exact)) || h.max != exact[len(exact)-1] {
		t.Fatalf("n %d max %v, want %d %v", h.n, h.max, len(exact), exact[len(exact)-1])
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		want := exact[max(int(q*float64(len(exact))+0.5), 1)-1]
		got := h.quantile(q)
		// The bucket's upper bound: never below the truth, within 1/128 above.
		if got < want || float64(got-want) > float64(want)/subBuckets+1 {
			t.Errorf("q%v = %v, want %v (+0.8%%)", q, got, want)
		}
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("an empty histogram has a median")
	}
}

func TestBucketsAreContiguous(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 257, 1 << 20, 1<<20 + 1, 1 << 40, 1 << 47, 1 << 62} {
		i := bucketOf(v)
		if i < prev || uint64(upper(i)) < v && i != buckets-1 {
			t.Errorf("value %d: bucket %d (upper %d) after %d", v, i, upper(i), prev)
		}
		prev = i
	}
}

// countDoer answers n requests then has no more work; every answer a
// failure when fail is set.
type countDoer struct {
	left atomic.Int64
	fail bool
}

func (c *countDoer) next(context.Context) bool { return c.left.Add(-1) >= 0 }
func (c *countDoer) do(context.Context) outcome {
	if c.fail {
		return outcome{class: "503", body: []byte("down")}
	}
	return outcome{}
}

func TestClosedLoopStopsWhenWorkRunsOut(t *testing.T) {
	ds := make([]doer, 3)
	for i := range ds {
		d := &countDoer{fail: i == 0}
		d.left.Store(100)
		ds[i] = d
	}
	var starts, ends, firsts atomic.Int64
	res := closedLoop(context.Background(), ds, 0, time.Hour, loopHooks{
		atStart: func() { starts.Add(1) }, atEnd: func() { ends.Add(1) },
		firstError: func(o outcome) { firsts.Add(1) },
	})
	if !res.exhausted || res.hist.n != 300 || res.errors["503"] != 100 || len(res.errors) != 1 {
		t.Errorf("exhausted %v, %d requests, errors %v: want exhausted, 300, 503 ×100", res.exhausted, res.hist.n, res.errors)
	}
	if res.window <= 0 || res.window >= time.Hour {
		t.Errorf("window %v: want the time until the work ran out", res.window)
	}
	if starts.Load() != 1 || ends.Load() != 1 || firsts.Load() != 1 {
		t.Errorf("hooks ran %d/%d/%d times, want once each", starts.Load(), ends.Load(), firsts.Load())
	}
}

func TestClosedLoopCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := &countDoer{}
	d.left.Store(1 << 40)
	res := closedLoop(ctx, []doer{d}, time.Hour, time.Hour, loopHooks{})
	if res.exhausted || res.hist.n != 0 {
		t.Errorf("a cancelled run: exhausted %v, %d requests", res.exhausted, res.hist.n)
	}
}

func TestCodePoolHandsEachCodeOnce(t *testing.T) {
	p := &codePool{codes: []authCode{{code: "a"}, {code: "b"}}}
	a, _ := p.take()
	b, _ := p.take()
	if _, ok := p.take(); ok || a.code != "a" || b.code != "b" || p.used() != 2 {
		t.Errorf("took %q %q, used %d; a third take must fail", a.code, b.code, p.used())
	}
}

func TestSelectScenarios(t *testing.T) {
	all, err := selectScenarios([]string{"all"})
	if err != nil || len(all) != 7 {
		t.Fatalf("all: %d, %v", len(all), err)
	}
	some, err := selectScenarios([]string{"jwks,refresh", "client_credentials"})
	if err != nil || len(some) != 3 || some[0].name != scClientCredentials || some[1].name != scRefresh || some[2].name != scJWKS {
		t.Errorf("got %v, %v: want the three in canonical order", some, err)
	}
	if _, err := selectScenarios([]string{"jwks", "nope"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("an unknown scenario: %v", err)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 4.0e+07
# TYPE wxidp_requests_total counter
wxidp_requests_total{path="/oauth2/token"} 3
`
	s, err := parseMetrics(strings.NewReader(text))
	if err != nil || s.cpuSeconds != 12.5 || s.rssBytes != 4e7 {
		t.Errorf("got %+v, %v", s, err)
	}
	if _, err := parseMetrics(strings.NewReader("# TYPE up gauge\nup 1\n")); err == nil {
		t.Error("metrics without the process collector parsed")
	}
}

func TestMedian(t *testing.T) {
	run := func(n int, tput float64, errs int64) runResult {
		return runResult{Run: n, Ceilings: []ceiling{{Signer: "go", PerSecond: tput * 2}},
			Scenarios: []scenarioResult{{Name: "jwks", Throughput: tput, ErrorCount: errs, Errors: map[string]int64{"503": errs},
				ServerRSSBytes: ptr(tput)}}}
	}
	m := median([]runResult{run(1, 30, 1), run(2, 10, 0), run(3, 20, 2)})
	s := m.Scenarios[0]
	if s.Throughput != 20 || *s.ServerRSSBytes != 20 || s.ErrorCount != 3 || s.Errors["503"] != 3 ||
		m.S == nil || m.S.PerSecond != 40 {
		t.Errorf("median %+v, S %+v: want 20 req/s, 3 errors summed, S 40", s, m.S)
	}
	if med([]float64{4, 1, 3, 2}) != 2.5 || med(nil) != 0 {
		t.Error("med of an even count is the mean of the middle two")
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestAutoCodes(t *testing.T) {
	if n := autoCodes(nil, time.Minute); n != 1000 {
		t.Errorf("no ceiling: %d codes, want the floor 1000", n)
	}
	if n := autoCodes(&ceiling{PerSecond: 5000}, 12*time.Second); n != 18000 {
		t.Errorf("S 5000 over 12 s: %d codes, want 0.3 × S × 12 = 18000", n)
	}
}
