package ratelimit

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxKeys bounds a Memory limiter's buckets.
const DefaultMaxKeys = 1 << 20

// sweepEvery is how often full buckets (those that equal a new one) are
// forgotten, so memory follows the keys seen recently, not ever.
const sweepEvery = time.Minute

// bucket is one token bucket. Its own type rather than
// golang.org/x/time/rate's Limiter, which cannot give back a token that
// was taken for work already started (Reservation.Cancel restores nothing
// once the reservation's time has passed), and a reserved failure token
// must be refundable when the work succeeds.
type bucket struct {
	tokens float64
	last   time.Time
	l      Limit
}

// at advances the bucket to now.
func (b *bucket) at(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(float64(b.l.Burst), b.tokens+now.Sub(b.last).Seconds()*b.l.Rate)
		b.last = now
	}
}

// Memory keeps buckets in this process.
type Memory struct {
	now     func() time.Time
	maxKeys int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

// NewMemory returns an empty Memory limiter; now nil means time.Now.
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, maxKeys: DefaultMaxKeys, buckets: map[string]*bucket{}, lastSweep: now()}
}

// Take implements Limiter. It never fails. When the key table is full even
// after a sweep, a new key is let through untracked: the alternative,
// refusing everyone new, would let whoever fills the table lock every
// other client out.
func (m *Memory) Take(_ context.Context, key string, l Limit, n int) (Result, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.lastSweep) >= sweepEvery || len(m.buckets) >= m.maxKeys {
		m.sweep(now)
	}
	b, ok := m.buckets[key]
	if !ok {
		if n == 0 || len(m.buckets) >= m.maxKeys {
			return Result{Allowed: true, Tokens: float64(l.Burst - n)}, nil
		}
		b = &bucket{tokens: float64(l.Burst), last: now, l: l}
		m.buckets[key] = b
	}
	b.at(now)
	if b.tokens+epsilon < float64(n) {
		return Result{Tokens: b.tokens}, nil
	}
	b.tokens = max(b.tokens-float64(n), 0)
	return Result{Allowed: true, Tokens: b.tokens}, nil
}

// Refund implements Limiter: it gives n tokens back to key's bucket, never
// above its burst. A bucket already forgotten (full) stays full.
func (m *Memory) Refund(_ context.Context, key string, _ Limit, n int) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.buckets[key]; ok {
		b.at(now)
		b.tokens = min(float64(b.l.Burst), b.tokens+float64(n))
	}
	return nil
}

func (m *Memory) sweep(now time.Time) {
	m.lastSweep = now
	for k, b := range m.buckets {
		if b.at(now); b.tokens >= float64(b.l.Burst) {
			delete(m.buckets, k)
		}
	}
}

// keys reports how many buckets are held (tests).
func (m *Memory) keys() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.buckets)
}
