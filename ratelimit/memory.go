package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds a Memory limiter's buckets.
const DefaultMaxKeys = 1 << 20

// sweepEvery is how often full buckets (those that equal a new one) are
// forgotten, so memory follows the keys seen recently, not ever.
const sweepEvery = time.Minute

// Memory keeps buckets in this process.
type Memory struct {
	now     func() time.Time
	maxKeys int

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

// NewMemory returns an empty Memory limiter; now nil means time.Now.
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, maxKeys: DefaultMaxKeys, buckets: map[string]*rate.Limiter{}, lastSweep: now()}
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
		b = rate.NewLimiter(rate.Limit(l.Rate), l.Burst)
		m.buckets[key] = b
	}
	allowed := b.AllowN(now, n)
	return Result{Allowed: allowed, Tokens: b.TokensAt(now)}, nil
}

func (m *Memory) sweep(now time.Time) {
	m.lastSweep = now
	for k, b := range m.buckets {
		if b.TokensAt(now) >= float64(b.Burst()) {
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
