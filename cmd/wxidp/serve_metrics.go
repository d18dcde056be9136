package main

import (
	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/web"
)

// newMetrics builds the metrics both listeners share, with the scrape-time
// sources: the signing keys' ages, and the pool's statistics when store is
// PostgreSQL (the in-memory store has no pool).
func newMetrics(store storage.Store, km *keys.Manager) *web.Metrics {
	opts := []web.MetricsOption{web.WithKeyAges(km)}
	if pg, ok := store.(*postgres.Store); ok {
		// The conversion compiles only while both structs have the same
		// fields, so they cannot drift apart.
		opts = append(opts, web.WithPoolStats(func() web.PoolStats { return web.PoolStats(pg.PoolStats()) }))
	}
	return web.NewMetrics(opts...)
}
