package postgres

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/wxidp/wxidp/storage"
)

// The client cache saves the round trip of every client lookup (each token,
// introspection and revocation request makes one) by keeping the rows of
// clients in memory. An entry is served only while this process LISTENs on
// clientsChannel, which migration 00009's trigger notifies with a client's
// id whenever its row changes, whoever changes it; every change committed
// after the LISTEN drops the entry, and the LISTEN itself drops them all
// (the changes before it were not heard). Without a live listener every
// lookup reads the database, so a change is never missed, only heard late:
// by another process's commit plus the notification's delivery, the same
// window as a query that started just before that commit.
//
// LISTEN needs a session of its own, which a pooler in transaction mode
// (PgBouncer's, documented in docs/operations.md) does not give: the LISTEN
// stays on a server connection other clients then use, and the cache would
// miss changes for good. So the listener checks that it talks to the
// backend itself: a pooler cannot forward the backend's process id in its
// connection handshake (cancel requests must go through the pooler), and
// when the id the handshake gave differs from pg_backend_pid() the cache
// stays off for the life of the store. Behind a session-mode pooler it is
// off too: safe, only slower.
//
// Only clients that exist are cached: anyone can send an unknown client_id,
// and caching misses would let them grow memory without bound. The cache
// therefore holds at most the clients table.
const (
	clientsChannel = "wxidp_clients"
	// listenerAppName names the listener's session in pg_stat_activity.
	listenerAppName = "wxidp client cache"
	// listenerPing is how long the listener waits for a notification before
	// it pings: a connection that died without a word (a partition, a
	// half-open socket) is found within this plus the store's timeout, and
	// the cache is dropped then.
	listenerPing = 5 * time.Second
	// The listener retries a lost connection after a backoff doubling from
	// the first to the second, with jitter so that many processes do not
	// reconnect in step after a failover.
	listenerBackoffMin = 50 * time.Millisecond
	listenerBackoffMax = 5 * time.Second
)

// WithoutClientCache turns the client cache off: every lookup reads the
// database, and no listener connection is opened.
func WithoutClientCache() Option {
	return func(s *Store) { s.clients = nil }
}

// clientCache is the cache and its listener's lifecycle. The listener is
// started by the first lookup that can use the cache, so a store that never
// reads clients (the janitor, migrations) opens no connection for it.
type clientCache struct {
	mu   sync.RWMutex
	byID map[string]*storage.Client // never handed out: lookups get copies
	// live is true while the listener LISTENs; only then are entries served
	// and stored.
	live bool
	// epoch grows with every invalidation and every change of live. A read
	// stores its result only if the epoch did not move while it queried: a
	// change heard meanwhile may be newer than what it read.
	epoch uint64

	started atomic.Bool
	run     sync.Mutex // guards what follows, and starting
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
	// beforeConnect, when set (by tests), runs before every connection
	// attempt of the listener, which waits for it.
	beforeConnect func(context.Context) error
	// handshakePID is the backend process id a connection's handshake gave
	// (tests replace it to play a pooler).
	handshakePID func(*pgconn.PgConn) uint32
}

func newClientCache() *clientCache {
	return &clientCache{byID: map[string]*storage.Client{}, handshakePID: (*pgconn.PgConn).PID}
}

// get returns a copy of the cached client, or nil with the epoch and
// liveness to pass to put after reading the database.
func (cc *clientCache) get(id string) (c *storage.Client, epoch uint64, live bool) {
	cc.mu.RLock()
	defer cc.mu.RUnlock()
	if !cc.live {
		return nil, cc.epoch, false
	}
	if e, ok := cc.byID[id]; ok {
		return cloneClient(e), 0, true
	}
	return nil, cc.epoch, true
}

// put caches c, which the caller must not keep, if nothing was invalidated
// since get returned epoch.
func (cc *clientCache) put(c *storage.Client, epoch uint64) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.live && cc.epoch == epoch {
		cc.byID[c.ID] = c
	}
}

// drop invalidates the clients ids.
func (cc *clientCache) drop(ids ...string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.epoch++
	for _, id := range ids {
		delete(cc.byID, id)
	}
}

// reset empties the cache and sets whether it may be used.
func (cc *clientCache) reset(live bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.epoch++
	clear(cc.byID)
	cc.live = live
}

// cloneClient is a deep copy: callers may change what they are handed (the
// admin API edits a looked-up client and writes it back).
func cloneClient(c *storage.Client) *storage.Client {
	d := *c
	d.SecretHash = bytes.Clone(c.SecretHash)
	d.WeChatAppSecret = bytes.Clone(c.WeChatAppSecret)
	d.GrantTypes = slices.Clone(c.GrantTypes)
	d.Scopes = slices.Clone(c.Scopes)
	d.Audience = slices.Clone(c.Audience)
	d.RedirectURIs = slices.Clone(c.RedirectURIs)
	d.AllowedCORSOrigins = slices.Clone(c.AllowedCORSOrigins)
	d.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	return &d
}

// loadClient reads a client through the cache. Inside a transaction it reads
// the transaction: it must see the transaction's own writes, and nothing
// committed after its snapshot when it is stricter than READ COMMITTED.
func (s *Store) loadClient(ctx context.Context, id string) (*storage.Client, error) {
	cc := s.clients
	if _, inTx := txFrom(ctx); cc == nil || inTx {
		return s.queryClient(ctx, id)
	}
	s.startClientListener()
	c, epoch, live := cc.get(id)
	if c != nil {
		return c, nil
	}
	c, err := s.queryClient(ctx, id)
	if err == nil && live {
		cc.put(cloneClient(c), epoch)
	}
	return c, err
}

// clientsWritten invalidates ids after this process wrote them, without
// waiting for the notification's echo. Inside a transaction they are
// invalidated again at Commit: until then another lookup can cache the
// committed row the transaction is about to replace.
func (s *Store) clientsWritten(ctx context.Context, ids ...string) {
	if s.clients == nil {
		return
	}
	if st, ok := txFrom(ctx); ok {
		st.clients = append(st.clients, ids...)
	}
	s.clients.drop(ids...)
}

// committed runs after the Commit of a transaction that wrote clients,
// whether it succeeded or not (a failed COMMIT may still have committed).
func (s *Store) committed(st *txState) {
	if s.clients != nil && len(st.clients) > 0 {
		s.clients.drop(st.clients...)
	}
}

// startClientListener starts the listener once, unless the store is closed.
func (s *Store) startClientListener() {
	cc := s.clients
	if cc.started.Load() {
		return
	}
	cc.run.Lock()
	defer cc.run.Unlock()
	if cc.started.Load() || cc.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cc.cancel, cc.done = cancel, make(chan struct{})
	go s.listenClients(ctx, cc.done)
	cc.started.Store(true)
}

// Close stops the client cache's listener and waits for it; lookups read
// the database from then on. It also gives up settling refresh rotations
// whose COMMIT had an unknown outcome (unsettled.go). The pool is the caller's to close, before or
// after. A store that is never closed keeps its listener until the
// listener's connection fails after the pool was closed. Close may be
// called more than once.
func (s *Store) Close() {
	s.unsettled.close()
	cc := s.clients
	if cc == nil {
		return
	}
	cc.run.Lock()
	cc.closed = true
	cancel, done := cc.cancel, cc.done
	cc.run.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// listenClients keeps a LISTEN connection until ctx ends or the pool is
// closed. Whenever it has none, the cache is empty and unused.
func (s *Store) listenClients(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	cc := s.clients
	backoff := listenerBackoffMin
	for {
		listened, err := s.listenOnce(ctx)
		cc.reset(false)
		if ctx.Err() != nil || errors.Is(err, puddle.ErrClosedPool) || errors.Is(err, errPooled) {
			return
		}
		if listened {
			backoff = listenerBackoffMin
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, listenerBackoffMax)
	}
}

// listenOnce takes a connection out of the pool for good, LISTENs on it and
// invalidates what it hears until the connection fails or ctx ends.
// listened reports whether the LISTEN succeeded.
func (s *Store) listenOnce(ctx context.Context) (listened bool, _ error) {
	cc := s.clients
	if cc.beforeConnect != nil {
		if err := cc.beforeConnect(ctx); err != nil {
			return false, err
		}
	}
	actx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	pc, err := s.pool.Acquire(actx)
	if err != nil {
		return false, err
	}
	// Hijacked, the connection leaves the pool: it neither counts against
	// MaxConns nor keeps pool.Close waiting.
	conn := pc.Hijack()
	defer closeListener(conn)
	// pgconn, not pgx, so the pool's query tracer does not see the
	// listener's statements and pings.
	res, err := conn.PgConn().Exec(actx, `SET application_name = '`+listenerAppName+`'; LISTEN `+clientsChannel+
		`; SELECT pg_backend_pid()`).ReadAll()
	if err != nil {
		return false, err
	}
	if len(res) != 3 || len(res[2].Rows) != 1 ||
		string(res[2].Rows[0][0]) != strconv.FormatUint(uint64(cc.handshakePID(conn.PgConn())), 10) {
		return false, errPooled
	}
	cc.reset(true)
	for {
		wctx, cancel := context.WithTimeout(ctx, listenerPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if n != nil {
			if n.Payload == "" {
				cc.reset(true)
			} else {
				cc.drop(n.Payload)
			}
		}
		switch {
		case err == nil:
			continue
		case ctx.Err() != nil:
			return true, ctx.Err()
		case !pgconn.Timeout(err):
			return true, err
		}
		// Notifications that arrive during the ping are buffered by pgx
		// and returned by the next wait, at once.
		pctx, cancel := context.WithTimeout(ctx, s.timeout)
		err = conn.PgConn().Ping(pctx)
		cancel()
		if err != nil {
			return true, err
		}
	}
}

// errPooled stops the listener: its session is not the backend's own.
var errPooled = errors.New("postgres: client cache off: the database is reached through a connection pooler, which cannot keep a LISTEN")

// closeListener closes the listener's connection, bounded: the store's
// context may be gone already.
func closeListener(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
