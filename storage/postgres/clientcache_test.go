package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// promptly is how soon a change must reach another process's cache.
const promptly = 2 * time.Second

// cacheStores returns two stores on one database with a pool each, as two
// processes have, and store a's pool for raw SQL (a third process that does
// not use our code). optsB configure store b.
func cacheStores(t *testing.T, optsB ...postgres.Option) (a, b *postgres.Store, raw *pgxpool.Pool) {
	t.Helper()
	a, raw, dsn := postgrestest.NewStore(t)
	t.Cleanup(a.Close)
	poolB, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(poolB.Close)
	b = postgres.New(poolB, optsB...)
	t.Cleanup(b.Close)
	return a, b, raw
}

// eventually polls cond until it holds, failing the test after promptly.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(promptly)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", promptly, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// warm looks id up through s until s's cache holds it, so that what the
// test checks next is an invalidation, not a first read.
func warm(t testing.TB, s *postgres.Store, id string) {
	t.Helper()
	eventually(t, id+" cached", func() bool {
		if _, err := s.LookupClient(context.Background(), id); err != nil {
			t.Fatalf("LookupClient(%s): %v", id, err)
		}
		return postgres.ClientCached(s, id)
	})
}

// exec runs raw SQL on pool.
func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// silence turns the notify trigger off, so that a change reaches a cache
// only by the mechanism under test, never by a notification's luck.
func silence(t *testing.T, raw *pgxpool.Pool) {
	t.Helper()
	exec(t, raw, `ALTER TABLE clients DISABLE TRIGGER clients_notify`)
}

func createClient(t *testing.T, s *postgres.Store, id string) *storage.Client {
	t.Helper()
	c := &storage.Client{
		ID: id, Name: "v1", SecretHash: []byte("hash-1"), GrantTypes: []string{"client_credentials"},
		Scopes: []string{"read"}, RedirectURIs: []string{"https://rp.example.com/cb"},
		TokenEndpointAuthMethod: "client_secret_basic", WeChatAppID: "wxapp", WeChatAppSecret: []byte("sealed-1"),
	}
	if err := s.CreateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func name(t *testing.T, s *postgres.Store, ctx context.Context, id string) string {
	t.Helper()
	c, err := s.LookupClient(ctx, id)
	if err != nil {
		t.Fatalf("LookupClient(%s): %v", id, err)
	}
	return c.Name
}

func gone(s *postgres.Store, id string) bool {
	_, err := s.GetClient(context.Background(), id)
	return errors.Is(err, fosite.ErrNotFound)
}

// A cached client is served without the database, as a copy its caller may
// change freely.
func TestClientCacheServesCopies(t *testing.T) {
	t.Parallel()
	a, b, raw := cacheStores(t)
	createClient(t, a, "c1")
	warm(t, b, "c1")
	silence(t, raw)
	exec(t, raw, `UPDATE clients SET name = 'unheard' WHERE id = 'c1'`)
	ctx := context.Background()
	if got := name(t, b, ctx, "c1"); got != "v1" {
		t.Fatalf("name = %q, want the cached v1 (is the cache used?)", got)
	}

	c, _ := b.LookupClient(ctx, "c1")
	c.Name, c.Scopes[0], c.SecretHash[0], c.GrantTypes = "mutated", "admin", 'X', append(c.GrantTypes, "x")
	fc, err := b.GetClient(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	fc.GetRedirectURIs()[0] = "https://evil.example.com"
	fc.(*storage.OAuthClient).Record.Audience = []string{"evil"}
	got, _ := b.LookupClient(ctx, "c1")
	if got.Name != "v1" || got.Scopes[0] != "read" || string(got.SecretHash) != "hash-1" ||
		len(got.GrantTypes) != 1 || got.RedirectURIs[0] != "https://rp.example.com/cb" || len(got.Audience) != 0 {
		t.Errorf("a caller's changes reached the cache: %+v", got)
	}
}

// Changes made through another store reach this one's cache: an update, a
// secret rotation and a deletion.
func TestClientCacheAcrossStores(t *testing.T) {
	t.Parallel()
	a, b, _ := cacheStores(t)
	ctx := context.Background()
	hasher := &fosite.BCrypt{Config: &fosite.Config{HashCost: 4}}
	oldHash, _ := hasher.Hash(ctx, []byte("old-secret"))
	newHash, _ := hasher.Hash(ctx, []byte("new-secret"))
	c := createClient(t, a, "c1")
	c.SecretHash = oldHash
	if err := a.UpdateClient(ctx, c, time.Time{}); err != nil {
		t.Fatal(err)
	}
	warm(t, b, "c1")

	c.Name = "v2"
	if err := a.UpdateClient(ctx, c, time.Time{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "update seen through b", func() bool { return name(t, b, ctx, "c1") == "v2" })

	warm(t, b, "c1")
	c.SecretHash = newHash
	if err := a.UpdateClient(ctx, c, time.Time{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "old secret refused through b", func() bool {
		fc, err := b.GetClient(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		return hasher.Compare(ctx, fc.GetHashedSecret(), []byte("old-secret")) != nil
	})
	fc, _ := b.GetClient(ctx, "c1")
	if err := hasher.Compare(ctx, fc.GetHashedSecret(), []byte("new-secret")); err != nil {
		t.Errorf("new secret through b: %v", err)
	}

	warm(t, b, "c1")
	if err := a.DeleteClient(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deletion seen through b", func() bool { return gone(b, "c1") })
}

// A change that bypasses our code (another program, psql) reaches the cache
// through the trigger: UPDATE, DELETE and TRUNCATE.
func TestClientCacheRawSQL(t *testing.T) {
	t.Parallel()
	a, b, raw := cacheStores(t)
	ctx := context.Background()
	createClient(t, a, "c1")
	createClient(t, a, "c2")
	warm(t, b, "c1")
	exec(t, raw, `UPDATE clients SET name = 'raw' WHERE id = 'c1'`)
	eventually(t, "raw UPDATE seen through b", func() bool { return name(t, b, ctx, "c1") == "raw" })

	warm(t, b, "c1")
	exec(t, raw, `DELETE FROM clients WHERE id = 'c1'`)
	eventually(t, "raw DELETE seen through b", func() bool { return gone(b, "c1") })

	warm(t, b, "c2")
	exec(t, raw, `TRUNCATE clients CASCADE`)
	eventually(t, "TRUNCATE seen through b", func() bool { return gone(b, "c2") })
}

// Unknown client ids are not cached: a client created behind the cache's
// back is found at once.
func TestClientCacheNoNegativeEntries(t *testing.T) {
	t.Parallel()
	_, b, raw := cacheStores(t)
	eventually(t, "listening", func() bool {
		if !gone(b, "ghost") {
			t.Fatal("ghost found before it exists")
		}
		return postgres.ClientCacheListening(b)
	})
	silence(t, raw)
	exec(t, raw, `INSERT INTO clients (id, name, token_endpoint_auth_method, created_at, updated_at)
		VALUES ('ghost', 'boo', 'none', now(), now())`)
	if gone(b, "ghost") {
		t.Fatal("a miss was cached")
	}
}

// Without its listener the cache is not used (a NOTIFY may be missed), and
// it is emptied when the listener is back; the listener then hears changes
// again.
func TestClientCacheListenerKilled(t *testing.T) {
	t.Parallel()
	var hold atomic.Bool
	release := make(chan struct{})
	a, b, raw := cacheStores(t)
	postgres.SetClientListenerGate(b, func(ctx context.Context) error {
		if hold.Load() {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	ctx := context.Background()
	createClient(t, a, "c1")
	warm(t, b, "c1")
	hold.Store(true)

	silence(t, raw)
	exec(t, raw, `UPDATE clients SET name = 'missed' WHERE id = 'c1'`)
	if got := name(t, b, ctx, "c1"); got != "v1" {
		t.Fatalf("name = %q, want the cached v1", got)
	}
	var killed int
	err := raw.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'wxidp client cache' AND datname = current_database()`).Scan(&killed)
	if err != nil || killed == 0 {
		t.Fatalf("terminating the listener: %d killed, %v", killed, err)
	}
	eventually(t, "listener down", func() bool { return !postgres.ClientCacheListening(b) })
	if got := name(t, b, ctx, "c1"); got != "missed" {
		t.Errorf("name while disconnected = %q, want the database's (missed)", got)
	}
	exec(t, raw, `UPDATE clients SET name = 'v3' WHERE id = 'c1'`)
	if got := name(t, b, ctx, "c1"); got != "v3" || postgres.ClientCached(b, "c1") {
		t.Errorf("name while disconnected = %q (cached %v), want v3 read through",
			got, postgres.ClientCached(b, "c1"))
	}

	close(release)
	eventually(t, "listener back", func() bool { return postgres.ClientCacheListening(b) })
	if got := name(t, b, ctx, "c1"); got != "v3" {
		t.Errorf("name after reconnecting = %q, want v3: what was cached before is gone", got)
	}
	exec(t, raw, `ALTER TABLE clients ENABLE TRIGGER clients_notify`)
	warm(t, b, "c1")
	exec(t, raw, `UPDATE clients SET name = 'v4' WHERE id = 'c1'`)
	eventually(t, "change after reconnecting seen", func() bool { return name(t, b, ctx, "c1") == "v4" })
}

// Inside a transaction a lookup reads the transaction, and its commit
// reaches the cache of its own process at once.
func TestClientCacheTransaction(t *testing.T) {
	t.Parallel()
	_, b, raw := cacheStores(t)
	ctx := context.Background()
	c := createClient(t, b, "c1")
	silence(t, raw)
	warm(t, b, "c1")

	tx, err := b.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Name = "in-tx"
	if err := b.UpdateClient(tx, c, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := name(t, b, tx, "c1"); got != "in-tx" {
		t.Errorf("LookupClient in the transaction = %q, want its own update", got)
	}
	if fc, err := b.GetClient(tx, "c1"); err != nil || fc.(*storage.OAuthClient).Record.Name != "in-tx" {
		t.Errorf("GetClient in the transaction = %v, %v; want its own update", fc, err)
	}
	// Outside, the committed row, cached again before the commit.
	warm(t, b, "c1")
	if got := name(t, b, ctx, "c1"); got != "v1" {
		t.Errorf("LookupClient outside the transaction = %q, want v1", got)
	}
	if err := b.Commit(tx); err != nil {
		t.Fatal(err)
	}
	if got := name(t, b, ctx, "c1"); got != "in-tx" {
		t.Errorf("LookupClient after Commit = %q, want in-tx at once", got)
	}

	tx, err = b.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteClient(tx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetClient(tx, "c1"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetClient in the transaction after its delete: %v, want fosite.ErrNotFound", err)
	}
	if err := b.Rollback(tx); err != nil {
		t.Fatal(err)
	}
	if got := name(t, b, ctx, "c1"); got != "in-tx" {
		t.Errorf("LookupClient after Rollback = %q, want in-tx", got)
	}
}

// A store's own writes reach its cache at once, without the notification.
func TestClientCacheOwnWrites(t *testing.T) {
	t.Parallel()
	_, b, raw := cacheStores(t)
	ctx := context.Background()
	c := createClient(t, b, "c1")
	silence(t, raw)

	warm(t, b, "c1")
	c.Name = "v2"
	if err := b.UpdateClient(ctx, c, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := name(t, b, ctx, "c1"); got != "v2" {
		t.Errorf("after UpdateClient: name = %q, want v2", got)
	}

	warm(t, b, "c1")
	n, err := b.ResealAll(ctx, func(v storage.Sealed) ([]byte, error) {
		return append(v.Value, "+resealed"...), nil
	})
	if err != nil || n != 1 {
		t.Fatalf("ResealAll = %d, %v; want 1 value", n, err)
	}
	if got, _ := b.LookupClient(ctx, "c1"); string(got.WeChatAppSecret) != "sealed-1+resealed" {
		t.Errorf("after ResealAll: app secret = %q, want the resealed value", got.WeChatAppSecret)
	}

	warm(t, b, "c1")
	if err := b.DeleteClient(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if !gone(b, "c1") {
		t.Error("after DeleteClient: still found")
	}
}

// Lookups racing with writes never leave a stale entry behind: once the
// writes stop, every store converges on the last one.
func TestClientCacheConcurrentWrites(t *testing.T) {
	t.Parallel()
	a, b, _ := cacheStores(t)
	ctx := context.Background()
	c := createClient(t, a, "c1")
	warm(t, b, "c1")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range []*postgres.Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.GetClient(ctx, "c1"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	const last = 40
	for i := range last + 1 {
		c.Name = fmt.Sprint("v", i)
		if err := a.UpdateClient(ctx, c, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	want := fmt.Sprint("v", last)
	if got := name(t, a, ctx, "c1"); got != want {
		t.Errorf("the writing store: name = %q, want %q at once", got, want)
	}
	eventually(t, "b converges", func() bool { return name(t, b, ctx, "c1") == want })
	warm(t, b, "c1")
	if got := name(t, b, ctx, "c1"); got != want {
		t.Errorf("b, cached: name = %q, want %q", got, want)
	}
}

// Close stops the listener and ends its session; the store still works,
// reading the database.
func TestClientCacheClose(t *testing.T) {
	t.Parallel()
	_, b, raw := cacheStores(t)
	ctx := context.Background()
	createClient(t, b, "c1")
	warm(t, b, "c1")
	done := postgres.ClientListenerDone(b)
	b.Close()
	select {
	case <-done:
	default:
		t.Fatal("Close returned before the listener stopped")
	}
	b.Close()
	eventually(t, "listener session gone", func() bool {
		var n int
		if err := raw.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'wxidp client cache' AND datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	silence(t, raw)
	exec(t, raw, `UPDATE clients SET name = 'v2' WHERE id = 'c1'`)
	if got := name(t, b, ctx, "c1"); got != "v2" || postgres.ClientCached(b, "c1") {
		t.Errorf("after Close: name = %q, cached %v; want v2 read through", got, postgres.ClientCached(b, "c1"))
	}
}

// A store never closed does not keep its listener past its pool: once the
// pool is closed and the listener's connection ends, it stops.
func TestClientCacheStopsWithPool(t *testing.T) {
	t.Parallel()
	a, raw, dsn := postgrestest.NewStore(t)
	createClient(t, a, "c1")
	pool, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	s := postgres.New(pool)
	t.Cleanup(s.Close) // only if the test fails
	warm(t, s, "c1")
	done := postgres.ClientListenerDone(s)
	pool.Close()
	exec(t, raw, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = 'wxidp client cache' AND datname = current_database()`)
	select {
	case <-done:
	case <-time.After(promptly):
		t.Fatal("the listener outlived its pool")
	}
}

// Behind a connection pooler, whose handshake cannot carry the backend's
// process id, the listener gives up and every lookup reads the database: a
// LISTEN through a pooler in transaction mode would miss changes for good.
func TestClientCacheOffBehindPooler(t *testing.T) {
	t.Parallel()
	a, b, raw := cacheStores(t)
	postgres.FakeClientListenerPID(b, 1)
	ctx := context.Background()
	createClient(t, a, "c1")
	name(t, b, ctx, "c1")
	select {
	case <-postgres.ClientListenerDone(b):
	case <-time.After(promptly):
		t.Fatal("the listener kept trying behind a pooler")
	}
	silence(t, raw)
	exec(t, raw, `UPDATE clients SET name = 'v2' WHERE id = 'c1'`)
	if got := name(t, b, ctx, "c1"); got != "v2" || postgres.ClientCached(b, "c1") {
		t.Errorf("name = %q, cached %v; want v2 read through", got, postgres.ClientCached(b, "c1"))
	}
}

// WithoutClientCache reads the database every time and opens no listener.
func TestClientCacheDisabled(t *testing.T) {
	t.Parallel()
	a, b, raw := cacheStores(t, postgres.WithoutClientCache())
	ctx := context.Background()
	createClient(t, a, "c1")
	silence(t, raw)
	for _, n := range []string{"v1", "v2"} {
		exec(t, raw, `UPDATE clients SET name = $1 WHERE id = 'c1'`, n)
		if got := name(t, b, ctx, "c1"); got != n {
			t.Errorf("name = %q, want %q", got, n)
		}
	}
}

// BenchmarkGetClient compares a lookup served by the cache with one that
// reads the database (go test -bench GetClient -run '^$').
func BenchmarkGetClient(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []postgres.Option
	}{{"cached", nil}, {"uncached", []postgres.Option{postgres.WithoutClientCache()}}} {
		b.Run(bc.name, func(b *testing.B) {
			s, _, _ := postgrestest.NewStore(b, bc.opts...)
			b.Cleanup(s.Close)
			ctx := context.Background()
			c := &storage.Client{ID: "bench", SecretHash: []byte("hash"), GrantTypes: []string{"client_credentials"},
				Scopes: []string{"read", "write"}, TokenEndpointAuthMethod: "client_secret_basic"}
			if err := s.CreateClient(ctx, c); err != nil {
				b.Fatal(err)
			}
			if bc.opts == nil {
				warm(b, s, "bench")
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					fc, err := s.GetClient(ctx, "bench")
					if err != nil || !slices.Contains(fc.GetScopes(), "write") {
						b.Error(fc, err)
						return
					}
				}
			})
		})
	}
}
