package storage

import (
	"context"
	"sync/atomic"
)

type failFastKey struct{}

// FailFast returns a context for one request in which, once a storage call
// has found the backend unavailable, every later call fails at once with
// ErrUnavailable instead of waiting out its own deadline. Some requests make
// several independent lookups (fosite looks a bearer token up as an access
// token, then as a refresh token): without this, a hung database would cost
// them one deadline per lookup before their 503.
func FailFast(ctx context.Context) context.Context {
	if _, ok := ctx.Value(failFastKey{}).(*atomic.Bool); ok {
		return ctx
	}
	return context.WithValue(ctx, failFastKey{}, new(atomic.Bool))
}

// MarkUnavailable records in a FailFast context that the backend was found
// unavailable; backends call it. It does nothing on other contexts.
func MarkUnavailable(ctx context.Context) {
	if hit, ok := ctx.Value(failFastKey{}).(*atomic.Bool); ok {
		hit.Store(true)
	}
}

// KnownUnavailable reports whether a call made with ctx already found the
// backend unavailable; backends then fail at once.
func KnownUnavailable(ctx context.Context) bool {
	hit, ok := ctx.Value(failFastKey{}).(*atomic.Bool)
	return ok && hit.Load()
}
