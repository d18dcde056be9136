package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of a Throttle's Redis handling.
const (
	// DefaultLogEvery is the least time between two log lines about Redis
	// failing: an outage must not write one line per request.
	DefaultLogEvery = 10 * time.Second
	// DefaultRetryShared is how long the per-process buckets stand in
	// after Redis failed, before Redis is tried again: while it is down,
	// requests do not each pay its timeout.
	DefaultRetryShared = time.Second
)

// epsilon absorbs the float error of Redis's token arithmetic (a bucket
// holding exactly one token may read 0.9999999).
const epsilon = 1e-6

// Options configure a Throttle.
type Options struct {
	// Shared, when set, holds the buckets of every process (Redis).
	Shared Limiter
	// Timeout bounds each call to Shared; 0 means 2 × DefaultRedisTimeout.
	Timeout time.Duration
	Log     *slog.Logger
	// LogEvery and RetryShared: 0 means the defaults above.
	LogEvery, RetryShared time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Throttle applies limits. Its methods never fail: a limit that cannot be
// checked against Redis is checked against this process's buckets.
type Throttle struct {
	opts     Options
	local    *Memory
	refusals *prometheus.CounterVec
	errors   prometheus.Counter

	mu         sync.Mutex
	retryAt    time.Time // Redis is not tried before then
	lastLog    time.Time
	unreported int // errors since the last log line
}

// New returns a Throttle.
func New(opts Options) *Throttle {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * DefaultRedisTimeout
	}
	if opts.LogEvery <= 0 {
		opts.LogEvery = DefaultLogEvery
	}
	if opts.RetryShared <= 0 {
		opts.RetryShared = DefaultRetryShared
	}
	return &Throttle{
		opts:  opts,
		local: NewMemory(opts.Now),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wxidp_ratelimit_refusals_total",
			Help: "Requests refused (429) by rate limit name.",
		}, []string{"limit"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wxidp_ratelimit_redis_errors_total",
			Help: "Rate-limit checks that Redis failed or did not answer in time (per-process limits applied instead).",
		}),
	}
}

// Describe and Collect make the Throttle the prometheus.Collector of its
// metrics: wxidp_ratelimit_refusals_total{limit} and
// wxidp_ratelimit_redis_errors_total.
func (t *Throttle) Describe(ch chan<- *prometheus.Desc) {
	t.refusals.Describe(ch)
	t.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (t *Throttle) Collect(ch chan<- prometheus.Metric) {
	t.refusals.Collect(ch)
	t.errors.Collect(ch)
}

// Allow takes a token from key's bucket of l for work about to be done.
func (t *Throttle) Allow(ctx context.Context, l Limit, key string) Decision {
	if !l.Enabled() {
		return Decision{Allowed: true}
	}
	r, _ := t.take(ctx, l, key, 1)
	return t.decide(l, r)
}

// Check reports whether key's bucket of l holds a token, taking none: the
// budget is spent later, by Spend, if the work fails.
func (t *Throttle) Check(ctx context.Context, l Limit, key string) Decision {
	if !l.Enabled() {
		return Decision{Allowed: true}
	}
	r, _ := t.take(ctx, l, key, 0)
	r.Allowed = r.Tokens >= 1-epsilon
	return t.decide(l, r)
}

// Spend takes a token from key's bucket of l for a failure that already
// happened, and reports whether this one emptied it: the first failure of
// a lockout, once across processes when the buckets are shared.
func (t *Throttle) Spend(ctx context.Context, l Limit, key string) (exhausted bool) {
	if !l.Enabled() {
		return false
	}
	r, _ := t.take(ctx, l, key, 1)
	return r.Allowed && r.Tokens < 1-epsilon
}

// Reservation is a token Reserve took for work that may fail: kept when
// it failed, given back (Refund) when it succeeded. A nil *Reservation
// (a disabled limit) refunds nothing.
type Reservation struct {
	t    *Throttle
	l    Limit
	key  string
	from origin
	// Last: this reservation took the bucket's last token, so if its work
	// fails a lockout begins (once per emptying, across processes when
	// the buckets are shared).
	Last bool
}

// Reserve takes a token from key's bucket of l before work whose failure
// the budget counts (a client authentication): check and spend in one
// atomic step, so concurrent requests cannot all pass a check made before
// any of them failed. The caller refunds the token when the work
// succeeds. Refused, it returns no reservation.
func (t *Throttle) Reserve(ctx context.Context, l Limit, key string) (Decision, *Reservation) {
	if !l.Enabled() {
		return Decision{Allowed: true}, nil
	}
	r, from := t.take(ctx, l, key, 1)
	if !r.Allowed {
		return t.decide(l, r), nil
	}
	return Decision{Allowed: true}, &Reservation{t: t, l: l, key: key, from: from, Last: r.Tokens < 1-epsilon}
}

// Refund gives the reserved token back, to the buckets it came from. It
// runs even when the request's context is done: the work succeeded and
// must not count as a failure.
func (rv *Reservation) Refund(ctx context.Context) {
	if rv == nil || rv.from == none {
		return
	}
	t, k := rv.t, bucketKey(rv.l, rv.key)
	if rv.from == local {
		_ = t.local.Refund(ctx, k, rv.l, 1)
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.opts.Timeout)
	defer cancel()
	if err := t.opts.Shared.Refund(sctx, k, rv.l, 1); err != nil {
		t.sharedFailed(err)
	}
}

func (t *Throttle) decide(l Limit, r Result) Decision {
	if r.Allowed {
		return Decision{Allowed: true}
	}
	t.refusals.WithLabelValues(l.Name).Inc()
	wait := (1 - r.Tokens) / l.Rate
	return Decision{Limit: l.Name, RetryAfter: time.Duration(math.Max(wait, 1) * float64(time.Second))}
}

// origin says which buckets a take used.
type origin int

const (
	none   origin = iota // nothing taken (the caller went away)
	shared               // Redis
	local                // this process
)

// take asks Redis when it is configured and not known to be down, else
// this process's buckets.
func (t *Throttle) take(ctx context.Context, l Limit, key string, n int) (Result, origin) {
	k := bucketKey(l, key)
	if t.opts.Shared != nil && t.sharedUp() {
		sctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
		r, err := t.opts.Shared.Take(sctx, k, l, n)
		cancel()
		if err == nil {
			return r, shared
		}
		if ctx.Err() != nil {
			// The client went away: not Redis's fault, and nobody waits
			// for the answer.
			return Result{Allowed: true, Tokens: float64(l.Burst)}, none
		}
		t.sharedFailed(err)
	}
	r, _ := t.local.Take(ctx, k, l, n)
	return r, local
}

func (t *Throttle) sharedUp() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.opts.Now().Before(t.retryAt)
}

func (t *Throttle) sharedFailed(err error) {
	t.errors.Inc()
	now := t.opts.Now()
	t.mu.Lock()
	t.retryAt = now.Add(t.opts.RetryShared)
	t.unreported++
	report := now.Sub(t.lastLog) >= t.opts.LogEvery
	n := t.unreported
	if report {
		t.lastLog, t.unreported = now, 0
	}
	t.mu.Unlock()
	if report {
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.New("no answer in time")
		}
		t.opts.Log.Warn("rate limits: Redis failed, limits are per process until it answers",
			"err", err.Error(), "errors_since_last_report", n)
	}
}

// bucketKey names a bucket: the limit's name, rate and burst (processes
// configured differently, say during a rolling change of a limit, keep
// separate buckets rather than reading each other's state under another
// rate), then a digest of the key, whose length and bytes the client
// chooses (a client_id, an address).
func bucketKey(l Limit, key string) string {
	sum := sha256.Sum256([]byte(key))
	return l.Name + ":" + strconv.FormatFloat(l.Rate, 'g', -1, 64) + ":" + strconv.Itoa(l.Burst) + ":" +
		base64.RawURLEncoding.EncodeToString(sum[:18])
}
