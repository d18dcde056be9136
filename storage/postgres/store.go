package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wxidp/wxidp/storage"
)

var _ storage.Store = (*Store)(nil)

// Store implements storage.Store on a pgx pool. It holds no state of its own,
// so any number of processes can share one database.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store on pool. The caller owns the pool and closes it.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// Ping checks the database answers (readiness).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
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
	pingTimeout     = 10 * time.Second
)

// Open connects a pool to dsn and pings it. pool_max_conns,
// pool_min_conns and the other pool_* DSN parameters override the sizing
// chosen here.
func Open(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
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
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: ping %s@%s:%d/%s: %w",
			cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return pool, nil
}
