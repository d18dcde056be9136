package ratelimit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testRedis connects to WXIDP_TEST_REDIS_URL (default the local Redis) under
// a fresh key prefix, so tests never share buckets. A missing Redis fails
// the test: scripts/ensure-redis starts one.
func testRedis(t testing.TB) (*Redis, string) {
	t.Helper()
	url := os.Getenv("WXIDP_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "wxidp-test:" + hex.EncodeToString(b) + ":"
	r, err := NewRedis(url, prefix, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if err := r.Ping(context.Background()); err != nil {
		t.Fatalf("Redis at %s does not answer (%v): run scripts/ensure-redis or set WXIDP_TEST_REDIS_URL", url, err)
	}
	return r, prefix
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestLimiters(t *testing.T) {
	t.Parallel()
	red, _ := testRedis(t)
	for name, lim := range map[string]Limiter{"memory": NewMemory(nil), "redis": red} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			l := Limit{Name: "t", Rate: minRate, Burst: 3} // no refill within the test
			if r, err := lim.Take(ctx, "k", l, 0); err != nil || !r.Allowed || r.Tokens < 2.99 {
				t.Fatalf("look at a new bucket: %+v %v", r, err)
			}
			for i := range 3 {
				r, err := lim.Take(ctx, "k", l, 1)
				if err != nil || !r.Allowed || r.Tokens < float64(2-i)-0.01 || r.Tokens > float64(2-i)+0.01 {
					t.Fatalf("take %d: %+v %v", i, r, err)
				}
			}
			if r, _ := lim.Take(ctx, "k", l, 1); r.Allowed || r.Tokens > 0.01 {
				t.Fatalf("take from an empty bucket: %+v", r)
			}
			if r, _ := lim.Take(ctx, "k", l, 0); r.Tokens > 0.01 {
				t.Fatalf("look at an empty bucket: %+v", r)
			}
			if r, _ := lim.Take(ctx, "other", l, 1); !r.Allowed {
				t.Fatal("another key shares the bucket")
			}
		})
	}
}

func TestThrottle(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1e9, 0)}
	th := New(Options{Now: c.now})
	ctx := context.Background()
	l := PerMinute("auth_failures", 3) // one token every 20 s

	// Check takes nothing; Spend reports the failure that empties the bucket.
	for i := range 3 {
		if !th.Check(ctx, l, "a").Allowed {
			t.Fatalf("check %d refused", i)
		}
		if exhausted := th.Spend(ctx, l, "a"); exhausted != (i == 2) {
			t.Fatalf("spend %d: exhausted = %v", i, exhausted)
		}
	}
	d := th.Check(ctx, l, "a")
	if d.Allowed || d.Limit != "auth_failures" || d.RetryAfterSeconds() != 20 {
		t.Fatalf("check of an empty bucket: %+v", d)
	}
	if th.Spend(ctx, l, "a") {
		t.Fatal("a failure past the budget started a second lockout")
	}
	c.add(20 * time.Second)
	if !th.Check(ctx, l, "a").Allowed || !th.Allow(ctx, l, "a").Allowed {
		t.Fatal("the bucket did not refill")
	}
	if d := th.Allow(ctx, l, "a"); d.Allowed || d.RetryAfterSeconds() != 20 {
		t.Fatalf("allow from an empty bucket: %+v", d)
	}
	if got := counterValue(t, th.refusals.WithLabelValues("auth_failures")); got != 2 {
		t.Fatalf("refusals = %v, want 2", got)
	}
	if !th.Allow(ctx, Limit{Name: "off"}, "a").Allowed {
		t.Fatal("a zero limit refused")
	}
}

// TestThrottleShared: two throttles (two processes) on one Redis spend one
// budget.
func TestThrottleShared(t *testing.T) {
	t.Parallel()
	red, _ := testRedis(t)
	a, b := New(Options{Shared: red}), New(Options{Shared: red})
	l := Limit{Name: "client", Rate: minRate, Burst: 4}
	allowed := 0
	for i := range 10 {
		th := a
		if i%2 == 1 {
			th = b
		}
		if th.Allow(context.Background(), l, "svc").Allowed {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("%d allowed across two throttles, want 4", allowed)
	}
	if counterValue(t, a.errors) != 0 {
		t.Fatal("Redis errors counted")
	}
}

// TestThrottleRedisDown: a refused connection and a Redis that never
// answers both let requests through, counted and logged once, and the
// per-process budgets apply meanwhile.
func TestThrottleRedisDown(t *testing.T) {
	t.Parallel()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hung.Close() })
	go func() { // accepts, never answers
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	for name, addr := range map[string]string{"closed": closedAddr, "hung": hung.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			red, err := NewRedis("redis://"+addr+"/0", "x:", 50*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer red.Close()
			var logs bytes.Buffer
			var mu sync.Mutex
			th := New(Options{Shared: red, Log: slog.New(slog.NewTextHandler(&lockedWriter{&mu, &logs}, nil)), RetryShared: time.Nanosecond})
			l := Limit{Name: "source", Rate: minRate, Burst: 3}
			var allowed int
			start := time.Now()
			for range 5 {
				if th.Allow(context.Background(), l, "1.2.3.4").Allowed {
					allowed++
				}
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Fatalf("5 checks took %v with Redis down", elapsed)
			}
			if allowed != 3 {
				t.Fatalf("%d of 5 allowed; want the per-process budget of 3", allowed)
			}
			if n := counterValue(t, th.errors); n != 5 {
				t.Fatalf("redis errors = %v, want 5", n)
			}
			mu.Lock()
			defer mu.Unlock()
			if n := strings.Count(logs.String(), "Redis failed"); n != 1 {
				t.Fatalf("%d log lines for 5 errors, want 1:\n%s", n, logs.String())
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestMemorySweep(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1e9, 0)}
	m := NewMemory(c.now)
	l := Limit{Name: "s", Rate: 1, Burst: 2}
	for _, k := range []string{"a", "b", "c"} {
		_, _ = m.Take(context.Background(), k, l, 1)
	}
	c.add(2 * time.Minute)
	_, _ = m.Take(context.Background(), "d", l, 1)
	if n := m.keys(); n != 1 {
		t.Fatalf("%d buckets after the others refilled, want 1", n)
	}
	m.maxKeys = 1
	if r, _ := m.Take(context.Background(), "e", l, 1); !r.Allowed || m.keys() != 1 {
		t.Fatal("a full table refused a new key or grew")
	}
}

func TestSource(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"203.0.113.7":               "203.0.113.7",
		"::ffff:203.0.113.7":        "203.0.113.7",
		"2001:db8:1:2:3:4:5:6":      "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":      "2001:db8:1:2::/64",
		"fe80::1%eth0":              "fe80::/64",
		"not-an-address":            "not-an-address",
		"2001:db8:1:3:0:0:0:1":      "2001:db8:1:3::/64",
		"2001:0db8:0001:0002::00ff": "2001:db8:1:2::/64",
	} {
		if got := Source(in); got != want {
			t.Errorf("Source(%q) = %q, want %q", in, got, want)
		}
	}
	if SourceOf(WithSource(context.Background(), "x")) != "x" || SourceOf(context.Background()) != "" {
		t.Error("source does not travel in the context")
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
