package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/wxidp/wxidp/storage"
)

var _ storage.Store = (*Store)(nil)

// Store implements storage.Store on a pgx pool. Its only state beyond its
// options is the client cache, which the database keeps coherent across
// processes (clientcache.go), so any number of processes can share one
// database (they should agree on the grace period). Close it when done.
type Store struct {
	pool    *pgxpool.Pool
	grace   time.Duration
	clock   func() time.Time
	timeout time.Duration
	clients *clientCache // nil: WithoutClientCache
	// accessWriter batches access-token inserts made outside a
	// transaction (batchwrite.go).
	accessWriter *insertBatcher
	// accessReader batches access-token lookups made outside a
	// transaction (batchread.go).
	accessReader *getBatcher
	// refreshReader batches refresh-token lookups made outside a
	// transaction; its batches judge the grace period when they are read.
	refreshReader *getBatcher
	// codeReader, pkceReader and oidcReader batch the reads of an
	// authorization code exchange that fosite makes outside its transaction.
	codeReader, pkceReader, oidcReader *getBatcher
	// claims batches wx.login code claims made outside a transaction
	// (batchclaim.go).
	claims *claimBatcher
	// users and logins batch the reads and writes of returning logins
	// (fastlogin.go).
	users  *userBatcher
	logins *stmtBatcher[int, *pendingLogin]
	// rotations batch refresh rotations made with their tokens
	// (fastrefresh.go).
	rotations *stmtBatcher[rotated, *pendingRotation]
	// exchanges batch authorization code exchanges made with their tokens
	// (fastcode.go).
	exchanges *stmtBatcher[codeInvalidation, *pendingExchange]
	// unsettled tracks refresh rotations and code exchanges whose COMMIT
	// had an unknown outcome (unsettled.go).
	unsettled *unsettled
	// exchangesUndone counts code exchanges settling undid (tests read it).
	exchangesUndone atomic.Int64
	// tracerProvider traces the batched calls (WithTracerProvider).
	tracerProvider trace.TracerProvider
}

// Option configures a Store.
type Option func(*Store)

// WithRefreshGrace sets the refresh grace period (storage.FositeStore): a
// refresh token rotated less than d ago can be rotated once more, so a client
// that lost the response to its refresh can retry instead of having its
// whole chain revoked as reuse. 0, the default, allows no retry. Keep it
// short (seconds): it is a window in which a stolen token works once.
// Processes sharing a database should use the same period; each judges the
// window by its own clock against the time the rotating process stamped, so
// clock skew between them shifts it by that much.
func WithRefreshGrace(d time.Duration) Option {
	return func(s *Store) { s.grace = max(0, d.Truncate(time.Microsecond)) }
}

// WithClock sets the clock that stamps refresh token deactivation and judges
// the grace period against it (tests move it instead of sleeping). Other
// timestamps keep the real time. The default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.clock = now
		}
	}
}

// New returns a Store on pool. The caller owns the pool and closes it, and
// closes the Store too (Close), which stops the client cache's listener.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{pool: pool, clock: time.Now, timeout: DefaultTimeout, clients: newClientCache(), unsettled: newUnsettled()}
	s.accessWriter = newInsertBatcher(s, accessTokens)
	s.accessReader = newGetBatcher(s, accessTokens, nil)
	s.refreshReader = newGetBatcher(s, refreshTokens, func() []any { return []any{s.graceCutoff(s.clockNow())} })
	s.codeReader = newGetBatcher(s, authorizeCodes, nil)
	s.pkceReader = newGetBatcher(s, pkceRequests, nil)
	s.oidcReader = newGetBatcher(s, oidcSessions, nil)
	s.claims = &claimBatcher{s: s}
	s.users = &userBatcher{s: s}
	s.logins = newLoginBatcher(s)
	s.rotations = newRotationBatcher(s)
	s.exchanges = newExchangeBatcher(s)
	for _, o := range opts {
		o(s)
	}
	var tracer trace.Tracer // nil: batches untraced
	if s.tracerProvider != nil {
		tracer = s.tracerProvider.Tracer(tracerName)
	}
	s.accessWriter.queue.traceAs(tracer, "create "+accessTokens.what)
	s.accessReader.queue.traceAs(tracer, "get "+accessTokens.what)
	s.refreshReader.queue.traceAs(tracer, "get "+refreshTokens.what)
	s.codeReader.queue.traceAs(tracer, "get "+authorizeCodes.what)
	s.pkceReader.queue.traceAs(tracer, "get "+pkceRequests.what)
	s.oidcReader.queue.traceAs(tracer, "get "+oidcSessions.what)
	s.claims.queue.traceAs(tracer, "claim wechat code")
	s.users.queue.traceAs(tracer, "returning user")
	s.logins.queue.traceAs(tracer, "returning login")
	s.rotations.queue.traceAs(tracer, "rotate refresh token")
	s.exchanges.queue.traceAs(tracer, "exchange authorize code")
	return s
}

// tracerName is the instrumentation scope of the batches' spans.
const tracerName = "github.com/wxidp/wxidp/storage/postgres"

// WithTracerProvider traces the batched calls (batchqueue.go) with tp: a
// span for each caller's wait and one for each batch, under which the
// pool's tracer (WithTracer) records its statements. nil: not traced.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Store) { s.tracerProvider = tp }
}

// clockNow reads the store's clock at the precision timestamptz keeps, so a
// deactivation time compares the same in Go and in the database.
func (s *Store) clockNow() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

// graceCutoff is the deactivation time after which an inactive refresh token
// still has its grace, or nil (SQL NULL, which matches no row) with no grace
// period: then nothing but the active flag counts, exactly as before grace
// periods existed, whatever clocks other processes stamped rows with.
func (s *Store) graceCutoff(now time.Time) *time.Time {
	if s.grace <= 0 {
		return nil
	}
	c := now.Add(-s.grace)
	return &c
}

// Ping checks the database answers (readiness).
func (s *Store) Ping(ctx context.Context) error {
	if knownDown(ctx) {
		return errKnownUnavailable
	}
	pctx, cancel := s.bound(ctx)
	defer cancel()
	return recordErr("ping", noteDown(ctx, s.pool.Ping(pctx)))
}

// Pool sizing when the DSN does not set it. pgxpool's default,
// max(4, NumCPU), is 4 connections on our 2-core machines: too few for
// concurrency 16-64, where requests queue for a connection while others hold
// one across a transaction. Every request holds a connection only for its
// queries, never across signing or a WeChat call, so a small multiple of the
// cores keeps the database busy without exhausting max_connections when
// several processes share it.
const (
	connsPerCPU     = 4
	minMaxConns     = 8
	maxConnIdleTime = 5 * time.Minute
	// Recycled now and then so a failover or a pgbouncer restart is picked up
	// and server-side memory does not grow forever.
	maxConnLifetime = time.Hour
)

// Open connects a pool to dsn and pings it, with DefaultTimeout.
func Open(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	return OpenTimeout(ctx, dsn, DefaultTimeout)
}

// OpenOption configures the pool OpenTimeout opens.
type OpenOption func(*pgxpool.Config)

// WithTracer sets the pool's query tracer (serve's OpenTelemetry spans). The
// tracer sees every statement and its arguments, which hold token
// signatures and sealed secrets: it must not record the arguments.
func WithTracer(t pgx.QueryTracer) OpenOption {
	return func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = t }
}

// OpenTimeout connects a pool to dsn and pings it. timeout bounds the
// ping and the dialing of every connection the pool opens (connect_timeout
// in the DSN overrides the latter); give the Store the same timeout
// (WithTimeout) so every call is bounded. pool_max_conns, pool_min_conns and
// the other pool_* DSN parameters override the sizing chosen here.
func OpenTimeout(ctx context.Context, dsn string, timeout time.Duration, opts ...OpenOption) (*pgxpool.Pool, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// Not wrapped: pgx's parse error carries the DSN, and its password
		// redaction is best effort.
		return nil, errors.New("postgres: cannot parse the database URL (not shown: it may hold a password)")
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = int32(max(minMaxConns, connsPerCPU*runtime.GOMAXPROCS(0)))
	}
	if !strings.Contains(dsn, "pool_min_conns") {
		cfg.MinConns = 2
	}
	if !strings.Contains(dsn, "pool_max_conn_idle_time") {
		cfg.MaxConnIdleTime = maxConnIdleTime
	}
	if !strings.Contains(dsn, "pool_max_conn_lifetime") {
		cfg.MaxConnLifetime = maxConnLifetime
	}
	if !strings.Contains(dsn, "connect_timeout") {
		cfg.ConnConfig.ConnectTimeout = timeout
	}
	// Statements outside an explicit transaction are transactions too: pin
	// their isolation on every session, whatever the database's default
	// (conditional upserts and leases rely on READ COMMITTED's re-check;
	// under REPEATABLE READ they fail with serialization errors).
	cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "read committed"
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: ping %s@%s:%d/%s: %w",
			cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, unavailableOr(err))
	}
	return pool, nil
}
