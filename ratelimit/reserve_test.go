package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

// TestReserveConcurrent: 100 concurrent reservations on a bucket of 20
// (no refill within the test) admit exactly 20, one of them the last
// token, with each backend; refunds then give the tokens back.
func TestReserveConcurrent(t *testing.T) {
	t.Parallel()
	red, _ := testRedis(t)
	for name, shared := range map[string]Limiter{"memory": nil, "redis": red} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			th := New(Options{Shared: shared})
			ctx := context.Background()
			l := Limit{Name: "auth_failures", Rate: minRate, Burst: 20}
			var admitted, last atomic.Int32
			var mu sync.Mutex
			var held []*Reservation
			var wg sync.WaitGroup
			for range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d, rv := th.Reserve(ctx, l, "client\x00198.51.100.7")
					if !d.Allowed {
						if rv != nil || d.Limit != "auth_failures" || d.RetryAfterSeconds() < 1 {
							t.Errorf("refusal: %+v %v", d, rv)
						}
						return
					}
					admitted.Add(1)
					if rv.Last {
						last.Add(1)
					}
					mu.Lock()
					held = append(held, rv)
					mu.Unlock()
				}()
			}
			wg.Wait()
			if admitted.Load() != 20 || last.Load() != 1 {
				t.Fatalf("admitted %d (want 20), %d took the last token (want 1)", admitted.Load(), last.Load())
			}
			for _, rv := range held[:5] {
				rv.Refund(ctx)
			}
			n := 0
			for range 10 {
				if d, _ := th.Reserve(ctx, l, "client\x00198.51.100.7"); d.Allowed {
					n++
				}
			}
			if n != 5 {
				t.Fatalf("%d admitted after 5 refunds, want 5", n)
			}
			if counterValue(t, th.errors) != 0 {
				t.Fatal("Redis errors counted")
			}
		})
	}
}

// TestRefundNeverExceedsBurst: refunds to a full bucket (or one taken from
// a bucket that refilled meanwhile) add nothing.
func TestRefundNeverExceedsBurst(t *testing.T) {
	t.Parallel()
	red, _ := testRedis(t)
	for name, lim := range map[string]Limiter{"memory": NewMemory(nil), "redis": red} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			l := Limit{Name: "t", Rate: minRate, Burst: 2}
			if _, err := lim.Take(ctx, "k", l, 1); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := lim.Refund(ctx, "k", l, 1); err != nil {
					t.Fatal(err)
				}
			}
			taken := 0
			for range 4 {
				if r, _ := lim.Take(ctx, "k", l, 1); r.Allowed {
					taken++
				}
			}
			if taken != 2 {
				t.Fatalf("%d taken after over-refunding, want the burst of 2", taken)
			}
		})
	}
}

// TestBucketKeyNamesLimit: two limits of one name but other settings keep
// separate buckets.
func TestBucketKeyNamesLimit(t *testing.T) {
	t.Parallel()
	a, b := Limit{Name: "x", Rate: 1, Burst: 2}, Limit{Name: "x", Rate: 1, Burst: 3}
	same := Limit{Name: "x", Rate: 1, Burst: 2}
	if bucketKey(a, "k") == bucketKey(b, "k") || bucketKey(a, "k") != bucketKey(same, "k") {
		t.Fatal("bucket keys do not follow the limit's settings")
	}
}
