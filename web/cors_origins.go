package web

import (
	"context"
	"sync"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// CORSOrigins lists the clients, whose allowed_cors_origins the CORS
// policy serves from memory (storage.ClientStore).
type CORSOrigins interface {
	ListClients(ctx context.Context) ([]storage.Client, error)
}

// Defaults of the origin cache.
const (
	// corsOriginsTTL is how long a loaded set of registered origins
	// answers before it is reloaded: an origin added to or removed from a
	// client takes effect on every process within this delay
	// (docs/operations.md says so).
	corsOriginsTTL = 5 * time.Second
	// corsOriginsLoadTimeout bounds one load, which no request waits for
	// once a set has been loaded.
	corsOriginsLoadTimeout = 10 * time.Second
)

// originSet maps each registered origin to the clients that register it.
type originSet map[string]map[string]struct{}

// originCache keeps the set of registered origins in memory. Requests
// carrying an Origin header come from anyone, and any well-formed origin
// would otherwise cost a database lookup before any rate limit; and a
// hung database would hold every such request. So: one load at a time;
// once a set is loaded, requests answer from it at once, and a set older
// than the TTL is reloaded in the background (kept while reloads fail).
// Only before the first successful load does a request wait, and then a
// failed load is its error (503 for a preflight, no CORS header
// otherwise), as without the cache.
type originCache struct {
	list        CORSOrigins
	ttl         time.Duration
	loadTimeout time.Duration
	now         func() time.Time

	mu       sync.Mutex
	set      originSet // nil until a load succeeds
	loadedAt time.Time
	loading  chan struct{} // closed when the load in progress ends; nil when none
	lastErr  error         // of the last load that failed
}

func newOriginCache(list CORSOrigins) *originCache {
	return &originCache{list: list, ttl: corsOriginsTTL, loadTimeout: corsOriginsLoadTimeout, now: time.Now}
}

// allowed reports whether origin is registered on clientID ("" for any
// client).
func (c *originCache) allowed(ctx context.Context, origin, clientID string) (bool, error) {
	set, err := c.get(ctx)
	if err != nil {
		return false, err
	}
	clients, ok := set[origin]
	if !ok || clientID == "" {
		return ok, nil
	}
	_, ok = clients[clientID]
	return ok, nil
}

func (c *originCache) get(ctx context.Context) (originSet, error) {
	c.mu.Lock()
	if c.set != nil {
		if c.now().Sub(c.loadedAt) >= c.ttl && c.loading == nil {
			c.startLoad(ctx)
		}
		set := c.set
		c.mu.Unlock()
		return set, nil
	}
	if c.loading == nil {
		c.startLoad(ctx)
	}
	done := c.loading
	c.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set == nil {
		return nil, c.lastErr
	}
	return c.set, nil
}

// startLoad loads the set in the background; c.mu is held. The load
// keeps ctx's values (trace, request ID) but not its cancellation: other
// requests may be waiting for it.
func (c *originCache) startLoad(ctx context.Context) {
	done := make(chan struct{})
	c.loading = done
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.loadTimeout)
	go func() {
		defer close(done)
		defer cancel()
		clients, err := c.list.ListClients(lctx)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.loading = nil
		if err != nil {
			c.lastErr = err
			return
		}
		set := originSet{}
		for _, cl := range clients {
			for _, o := range cl.AllowedCORSOrigins {
				if set[o] == nil {
					set[o] = map[string]struct{}{}
				}
				set[o][cl.ID] = struct{}{}
			}
		}
		c.set, c.loadedAt, c.lastErr = set, c.now(), nil
	}()
}
