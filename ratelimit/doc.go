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
// Three operations cover what callers need: Allow takes a token for work
// about to be done; Check only looks (is a token there?), for budgets that
// are spent by failures found later; Spend takes a token for a failure that
// already happened and reports whether that emptied the bucket (a lockout
// begins).
package ratelimit
