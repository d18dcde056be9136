package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
)

// DefaultRedisTimeout bounds every Redis round trip (dial, write, read): a
// limit check sits in front of every request, so a hung Redis must cost a
// request at most this much before it is let through.
const DefaultRedisTimeout = 100 * time.Millisecond

// Redis keeps buckets in Redis, shared by every process that uses the same
// Redis and prefix, with GCRA (redis_rate): one atomic script per check,
// keys expire once their bucket is full again.
type Redis struct {
	client  *redis.Client
	limiter *redis_rate.Limiter
	prefix  string
}

// NewRedis connects lazily to the Redis at rawURL (redis:// or rediss://),
// keying buckets under prefix. timeout (0 = DefaultRedisTimeout) bounds
// each dial, read and write; failed commands are not retried (the caller
// falls back instead).
func NewRedis(rawURL, prefix string, timeout time.Duration) (*Redis, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		// url.Error quotes the whole URL, password included: keep only
		// its reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid Redis URL: %w", err)
	}
	if timeout <= 0 {
		timeout = DefaultRedisTimeout
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = timeout, timeout, timeout, timeout
	// One attempt each: the Throttle falls back at once, and retries
	// would multiply the timeout every request pays while Redis is down.
	opts.MaxRetries, opts.DialerRetries = -1, 1
	// Context deadlines bound the calls too (Throttle sets one).
	opts.ContextTimeoutEnabled = true
	// go-redis logs every failed dial to stderr through a process-wide
	// logger; the Throttle reports failures itself, at most once per
	// interval, so the library's lines are dropped (an atomic store).
	redis.SetLogger(&logging.VoidLogger{})
	c := redis.NewClient(opts)
	return &Redis{client: c, limiter: redis_rate.NewLimiter(c), prefix: prefix}, nil
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error { return r.client.Ping(ctx).Err() }

// Close releases the connections.
func (r *Redis) Close() error { return r.client.Close() }

// Take implements Limiter. redis_rate counts whole tokens per period, so
// the rate is expressed per hour (Validate keeps it at least 1/h).
func (r *Redis) Take(ctx context.Context, key string, l Limit, n int) (Result, error) {
	res, err := r.limiter.AllowN(ctx, r.prefix+key, redisLimit(l), n)
	if err != nil {
		return Result{}, err
	}
	// ResetAfter is how long until the bucket is full again: from it, the
	// tokens it holds now (after this take when allowed).
	tokens := float64(l.Burst) - max(res.ResetAfter, 0).Seconds()*l.Rate
	tokens = min(max(tokens, 0), float64(l.Burst))
	return Result{Allowed: res.Allowed >= n, Tokens: tokens}, nil
}

func redisLimit(l Limit) redis_rate.Limit {
	return redis_rate.Limit{Rate: int(math.Round(l.Rate * 3600)), Period: time.Hour, Burst: l.Burst}
}

// redisRateKeyPrefix is the prefix redis_rate puts before every key (its
// unexported redisPrefix); TestRedisRefund fails if that ever changes.
const redisRateKeyPrefix = "rate:"

// refundScript gives cost tokens back to a redis_rate GCRA bucket by moving
// its theoretical arrival time (tat, seconds since 2017-01-01 by Redis's
// clock, as redis_rate stores it) back by cost emission intervals, never
// before now: a bucket back at now is full, so its key goes. redis_rate's
// AllowN with a negative cost is no refund: it leaves tat untouched when
// the result is in the past, keeping up to a token spent for good.
var refundScript = redis.NewScript(`
local tat = redis.call("GET", KEYS[1])
if not tat then
  return 0
end
local now = redis.call("TIME")
now = (now[1] - 1483228800) + (now[2] / 1000000)
local new_tat = tonumber(tat) - tonumber(ARGV[1])
if new_tat <= now then
  redis.call("DEL", KEYS[1])
else
  redis.call("SET", KEYS[1], new_tat, "EX", math.ceil(new_tat - now))
end
return 1
`)

// Refund implements Limiter, atomically in Redis.
func (r *Redis) Refund(ctx context.Context, key string, l Limit, n int) error {
	rl := redisLimit(l)
	back := rl.Period.Seconds() / float64(rl.Rate) * float64(n)
	return refundScript.Run(ctx, r.client, []string{redisRateKeyPrefix + r.prefix + key}, back).Err()
}
