package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

func mustCreateKey(t *testing.T, ctx context.Context, s *postgres.Store, kid string, state storage.KeyState, created time.Time) {
	t.Helper()
	k := &storage.SigningKey{KID: kid, Algorithm: "RS256", State: state, PrivateKey: []byte("sealed-" + kid), CreatedAt: created}
	if state == storage.KeyActive {
		k.ActivatedAt = created
	}
	if err := s.CreateSigningKey(ctx, k); err != nil {
		t.Fatalf("CreateSigningKey(%s): %v", kid, err)
	}
}

// Losers of concurrent rotations get storage.ErrNotReady because the
// rotation re-checks rows at READ COMMITTED. A server (or database) whose
// default isolation is SERIALIZABLE would turn them into serialization
// failures, so the rotation states its own level. Two pools stand for two
// processes.
func TestRotateUnderSerializableDefault(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, pool, dsn := postgrestest.NewStore(t)
	var db string
	if err := pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+
		` SET default_transaction_isolation = 'serializable'`); err != nil {
		t.Fatal(err)
	}
	stores := make([]*postgres.Store, 2)
	var p *pgxpool.Pool
	for i := range stores {
		var err error
		if p, err = postgres.Open(ctx, dsn); err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		stores[i] = postgres.New(p)
	}
	// The store pins READ COMMITTED on its own sessions; a plain connection
	// shows the database default really is SERIALIZABLE.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var iso string
	if err := conn.QueryRow(ctx, `SHOW transaction_isolation`).Scan(&iso); err != nil || iso != "serializable" {
		t.Fatalf("new connections run at %q, %v; want serializable (the setting did not take)", iso, err)
	}
	created := time.Now().Add(-time.Hour)
	mustCreateKey(t, ctx, stores[0], "k-active", storage.KeyActive, created)
	mustCreateKey(t, ctx, stores[0], "k-next", storage.KeyNext, created)

	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			k := &storage.SigningKey{KID: fmt.Sprintf("k-new-%d", i), Algorithm: "RS256", PrivateKey: []byte("x")}
			errs[i] = stores[i%2].RotateSigningKeys(ctx, k, created, time.Now())
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, storage.ErrNotReady):
			t.Errorf("RotateSigningKeys #%d: %v, want nil or ErrNotReady", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d rotations succeeded, want 1", wins)
	}
}

// ResealAll's batched compare-and-set updates and a rotation both lock
// signing key rows; they must take them in one order (kid), or a rotation
// running while its keys are resealed can deadlock. Deadlocks are detected
// after deadlock_timeout (1s) and would surface here as errors.
func TestRotateDuringReseal(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _, _ := postgrestest.NewStore(t)
	created := time.Now().Add(-time.Hour)
	// Kids sort active before next, the order in which a rotation that
	// locked the next key first would deadlock.
	mustCreateKey(t, ctx, s, "a-0", storage.KeyActive, created)
	mustCreateKey(t, ctx, s, "n-0", storage.KeyNext, created)

	const rounds = 40
	var wg sync.WaitGroup
	var rotateErr, resealErr error
	wg.Go(func() {
		for i := range rounds {
			// A far notBefore: every next key is ready, so each round
			// rotates.
			k := &storage.SigningKey{KID: fmt.Sprintf("n-%d", i+1), Algorithm: "RS256", PrivateKey: []byte("x")}
			if err := s.RotateSigningKeys(ctx, k, time.Now().Add(time.Hour), time.Now()); err != nil {
				rotateErr = fmt.Errorf("round %d: %w", i, err)
				return
			}
		}
	})
	wg.Go(func() {
		for i := range rounds {
			_, err := s.ResealAll(ctx, func(sv storage.Sealed) ([]byte, error) {
				return append(sv.Value[:len(sv.Value):len(sv.Value)], byte(i)), nil
			})
			if err != nil {
				resealErr = fmt.Errorf("round %d: %w", i, err)
				return
			}
		}
	})
	wg.Wait()
	if rotateErr != nil || resealErr != nil {
		t.Fatalf("rotate: %v; reseal: %v", rotateErr, resealErr)
	}
	keys, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != rounds+2 {
		t.Errorf("%d keys after %d rotations, want %d", len(keys), rounds, rounds+2)
	}
}

// Each page of ResealAll must be a range of the primary key index, so a
// batch costs the same on the last page of a large table as on the first.
// Sequential scans and sorts are priced out so the plan shows whether the
// index can serve the query at all.
func TestResealPlansUseKeys(t *testing.T) {
	t.Parallel()
	_, pool, _ := postgrestest.NewStore(t)
	for table, st := range postgres.ResealPageStatements() {
		args := make([]any, st.NKey)
		for i := range args {
			args[i] = "x"
		}
		plan := explain(t, pool, `SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off`, st.SQL, args...)
		if !strings.Contains(plan, "Index Scan using "+table+"_pkey") || strings.Contains(plan, "Seq Scan") ||
			strings.Contains(plan, "Sort") {
			t.Errorf("page of %s is not a primary key range:\n%s", table, plan)
		}
	}
}
