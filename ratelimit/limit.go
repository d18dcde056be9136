package ratelimit

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Limit is a token bucket: Rate tokens a second refill it, up to Burst. A
// zero Rate disables the limit. Name labels metrics and keys; it must come
// from a fixed set in code.
type Limit struct {
	Name  string
	Rate  float64
	Burst int
}

// PerMinute is a bucket of n tokens refilled at n a minute.
func PerMinute(name string, n int) Limit { return Limit{Name: name, Rate: float64(n) / 60, Burst: n} }

// Enabled reports whether the limit applies at all.
func (l Limit) Enabled() bool { return l.Rate > 0 }

// minRate is the slowest refill the Redis backend can express (it counts
// whole tokens an hour).
const minRate = 1.0 / 3600

// Validate refuses a limit that cannot be enforced as written.
func (l Limit) Validate() error {
	switch {
	case l.Rate < 0 || math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0):
		return fmt.Errorf("rate limit %s: rate must be a finite number >= 0", l.Name)
	case l.Rate > 0 && l.Rate < minRate:
		return fmt.Errorf("rate limit %s: rate must be 0 (off) or at least one per hour", l.Name)
	case l.Rate > 0 && l.Burst < 1:
		return fmt.Errorf("rate limit %s: burst must be at least 1", l.Name)
	}
	return nil
}

// Result is a Limiter's answer: whether the tokens were taken, and how many
// the bucket holds now (after taking them, or untouched when refused).
type Result struct {
	Allowed bool
	Tokens  float64
}

// Limiter keeps token buckets by key. Take takes n tokens from key's
// bucket of limit l when it holds them; n = 0 only looks. Refund gives n
// tokens taken earlier back (never above the burst).
type Limiter interface {
	Take(ctx context.Context, key string, l Limit, n int) (Result, error)
	Refund(ctx context.Context, key string, l Limit, n int) error
}

// Decision is a Throttle's verdict on one request.
type Decision struct {
	Allowed bool
	// Limit names the limit that refused.
	Limit string
	// RetryAfter is how long until the bucket holds a token again: zero
	// when allowed, at least a second when refused (Retry-After has
	// whole seconds).
	RetryAfter time.Duration
}

// RetryAfterSeconds is the Retry-After header value of a refusal.
func (d Decision) RetryAfterSeconds() int {
	return max(1, int(math.Ceil(d.RetryAfter.Seconds())))
}

// Refusal is the error a refused request carries to the layer that writes
// the 429 (and its Retry-After).
type Refusal struct{ Decision }

func (r *Refusal) Error() string { return "rate limit " + r.Limit + " exceeded" }

// Source is the key of a client address: IPv4 addresses as they are, IPv6
// addresses by their /64, which one subscriber usually holds whole (per
// address, one host could take 2^64 buckets).
func Source(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}

type sourceKey struct{}

// WithSource records the request's source (see Source) for throttles
// deeper in the call chain, which do not see the HTTP request's peer.
func WithSource(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, sourceKey{}, source)
}

// SourceOf is the source WithSource recorded, or "".
func SourceOf(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}
