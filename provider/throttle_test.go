package provider

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/ratelimit"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestLockoutReportedOncePerWindow: a lockout is reported when a pair's
// budget is first spent, not again each time a refill lets one more
// failure spend it, and again once a whole window has passed; failures
// naming a client that does not exist are throttled but never reported;
// a success gives its reserved token back.
func TestLockoutReportedOncePerWindow(t *testing.T) {
	t.Parallel()
	c := &testClock{t: time.Unix(1e9, 0)}
	var reported []string
	l := &Limits{
		Throttle:     ratelimit.New(ratelimit.Options{Now: c.now}),
		AuthFailures: ratelimit.PerMinute("auth_failures", 3), // a token every 20 s
		OnLockout:    func(_ context.Context, id, _ string) { reported = append(reported, id) },
	}
	ctx := ratelimit.WithSource(context.Background(), "198.51.100.7")
	req := func(id string) *http.Request {
		r := &http.Request{Header: http.Header{}, PostForm: url.Values{}}
		r.SetBasicAuth(id, "wrong")
		return r
	}
	attempt := func(id string, err error) error {
		r := req(id)
		rv, rerr := l.beforeClientAuth(ctx, r)
		if rerr != nil {
			return rerr
		}
		l.afterClientAuth(ctx, r, rv, err)
		return nil
	}
	wrong := fosite.ErrInvalidClient
	for i := range 3 {
		if err := attempt("svc", wrong); err != nil {
			t.Fatalf("failure %d refused: %v", i, err)
		}
	}
	if attempt("svc", wrong) == nil || len(reported) != 1 {
		t.Fatalf("after 3 failures: reported %v, want one lockout and a refusal", reported)
	}
	for range 2 { // each refill lets one more failure through
		c.add(20 * time.Second)
		if err := attempt("svc", wrong); err != nil {
			t.Fatalf("after a refill: %v", err)
		}
	}
	if len(reported) != 1 {
		t.Fatalf("lockouts reported %v; refills within the window must not repeat it", reported)
	}
	c.add(61 * time.Second)
	for range 3 {
		_ = attempt("svc", wrong)
	}
	if len(reported) != 2 {
		t.Fatalf("lockouts reported %v, want a second one a window later", reported)
	}

	unknown := fosite.ErrInvalidClient.WithWrap(fosite.ErrNotFound)
	for range 5 {
		_ = attempt("nobody", unknown)
	}
	if attempt("nobody", unknown) == nil || len(reported) != 2 {
		t.Fatalf("unknown client: reported %v; want throttled, not reported", reported)
	}

	// Successes refund: any number of them leave the budget whole.
	for i := range 10 {
		if err := attempt("ok", nil); err != nil {
			t.Fatalf("success %d refused: %v", i, err)
		}
	}
}

type countingCounter struct{ n atomic.Int64 }

func (c *countingCounter) Inc() { c.n.Add(1) }

// TestLockoutEventsCappedPerClient: lockouts of one client from many
// sources (an IPv6 /48 holds 65,536 /64s) are reported at most
// LockoutEventsPerClient times a minute, the rest only counted, while
// another client's lockouts are still reported and every source is still
// refused.
func TestLockoutEventsCappedPerClient(t *testing.T) {
	t.Parallel()
	c := &testClock{t: time.Unix(1e9, 0)}
	reported := map[string]int{}
	suppressed := &countingCounter{}
	l := &Limits{
		Throttle:           ratelimit.New(ratelimit.Options{Now: c.now}),
		AuthFailures:       ratelimit.PerMinute("auth_failures", 3),
		OnLockout:          func(_ context.Context, id, _ string) { reported[id]++ },
		LockoutsSuppressed: suppressed,
	}
	lockOut := func(id, source string) {
		ctx := ratelimit.WithSource(context.Background(), source)
		for i := range 4 {
			r := &http.Request{Header: http.Header{}, PostForm: url.Values{}}
			r.SetBasicAuth(id, "wrong")
			rv, err := l.beforeClientAuth(ctx, r)
			if i == 3 {
				if err == nil {
					t.Fatalf("%s from %s: 4th failure not refused", id, source)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s from %s: failure %d refused: %v", id, source, i, err)
			}
			l.afterClientAuth(ctx, r, rv, fosite.ErrInvalidClient)
		}
	}
	const sources = 50
	for i := range sources {
		lockOut("svc", fmt.Sprintf("2001:db8:0:%x::", i))
	}
	if got := reported["svc"]; got != LockoutEventsPerClient {
		t.Fatalf("svc lockouts from %d sources reported %d times, want the cap %d", sources, got, LockoutEventsPerClient)
	}
	if got := suppressed.n.Load(); got != sources-LockoutEventsPerClient {
		t.Fatalf("suppressed lockouts counted %d, want %d", got, sources-LockoutEventsPerClient)
	}
	lockOut("other", "198.51.100.7")
	if reported["other"] != 1 {
		t.Fatalf("another client's lockout reported %d times, want 1", reported["other"])
	}
}
