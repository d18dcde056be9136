package provider

import (
	"context"
	"net/http"
	"net/url"
	"sync"
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
