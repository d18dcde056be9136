// Package ratelimit throttles requests by keys that callers have proven
// (an authenticated client, a verified token's subject, a source address),
// per process or, with Redis, across every process of a deployment.
//
// A Limit is a token bucket: Rate tokens a second, at most Burst held. A
// Limiter keeps the buckets: Memory in this process (golang.org/x/time/rate),
// Redis in a shared Redis (GCRA, github.com/go-redis/redis_rate). Callers
// use a Throttle, which hashes keys (they may come from request input, so
// their length is the client's choice), counts refusals by limit name and,
// when Redis fails or hangs, falls back to its per-process buckets for a
// moment instead of refusing or failing the request: a Redis outage only
// loosens the cluster-wide budgets to per-process ones, it never answers
// 500. Redis errors are counted and logged at most once per interval.
//
// Four operations cover what callers need: Allow takes a token for work
// about to be done; Reserve takes one before work whose failures the budget
// counts, to be refunded when the work succeeds (check and spend in one
// atomic step, so a concurrent batch cannot pass a check made before any of
// it failed); Check only looks (is a token there?) and Spend takes a token
// for a failure that already happened, for budgets where reserving would
// refuse honest concurrent work (many users behind one address). Bucket
// keys name the limit's rate and burst, so processes configured
// differently never share a bucket.
package ratelimit
