package postgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// Each purge statement must be able to walk its table's expiry index (and
// the refresh tokens' deactivation index): that is what keeps a batch short
// however large the backlog. Sequential scans are priced out so the plan
// shows whether an index can serve the query at all (on these empty tables
// the planner would otherwise scan); TestPurgeBacklog checks the choice on a
// table of realistic size.
func TestPurgePlansUseIndexes(t *testing.T) {
	t.Parallel()
	_, pool, _ := postgrestest.NewStore(t)
	now := time.Now()
	for table, sql := range postgres.PurgeStatements() {
		args := []any{now, 100}
		want := []string{table + "_expires_at"}
		if table == "oauth2_refresh_tokens" {
			args = append(args, now)
			want = append(want, "oauth2_refresh_tokens_deactivated_at")
		}
		plan := explain(t, pool, `SET LOCAL enable_seqscan = off`, sql, args...)
		for _, index := range want {
			if !strings.Contains(plan, index) {
				t.Errorf("purge of %s does not use index %s:\n%s", table, index, plan)
			}
		}
		if strings.Contains(plan, "Seq Scan") {
			t.Errorf("purge of %s scans a table sequentially:\n%s", table, plan)
		}
	}
}

// explain returns the plan of sql in a transaction on pool that first runs
// setup; the transaction is rolled back.
func explain(t *testing.T, pool *pgxpool.Pool, setup, sql string, args ...any) string {
	t.Helper()
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if setup != "" {
		if _, err := tx.Exec(ctx, setup); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		t.Fatalf("EXPLAIN: %v", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("EXPLAIN: %v", err)
	}
	return strings.Join(lines, "\n")
}

// TestPurgeBacklog purges a large backlog of expired access tokens the way
// the janitor does, in batches until nothing is left, and reports the rate.
// It asserts correctness, not speed: the rate is logged for comparison.
func TestPurgeBacklog(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool, _ := postgrestest.NewStore(t)
	newTestClient(t, ctx, s, "a")
	const expired, live, batch = 200_000, 1_000, 5_000
	now := time.Now().UTC().Truncate(time.Second)
	// One INSERT ... SELECT: building the backlog through the store would
	// take longer than purging it. Expiries are spread over the past so the
	// index walk has an order to follow.
	_, err := pool.Exec(ctx, `INSERT INTO oauth2_access_tokens (signature, request_id, requested_at, client_id,
			requested_scopes, granted_scopes, requested_audience, granted_audience, form, session, subject, expires_at)
		SELECT 'at-' || g, 'req-' || g, $1, 'a', '{}', '{}', '{}', '{}', '', NULL, 'sub-' || g,
			CASE WHEN g <= $2::int THEN $1::timestamptz - make_interval(secs => g) ELSE $1 + make_interval(secs => g) END
		FROM generate_series(1, $2::int + $3::int) g`, now, expired, live)
	if err != nil {
		t.Fatalf("insert backlog: %v", err)
	}
	// As autovacuum would after such a load; without statistics the
	// planner's guesses say nothing about production.
	if _, err := pool.Exec(ctx, `ANALYZE oauth2_access_tokens`); err != nil {
		t.Fatal(err)
	}
	sql := postgres.PurgeStatements()["oauth2_access_tokens"]
	if plan := explain(t, pool, "", sql, now, batch); !strings.Contains(plan, "oauth2_access_tokens_expires_at") {
		t.Errorf("purge plan on %d rows does not walk the expiry index:\n%s", expired+live, plan)
	}

	start := time.Now()
	purged, rounds := 0, 0
	for ; rounds <= expired/batch+1; rounds++ {
		stats, err := s.PurgeExpired(ctx, now, now.Add(-time.Hour), batch)
		if err != nil {
			t.Fatalf("PurgeExpired round %d: %v", rounds+1, err)
		}
		n := stats["oauth2_access_tokens"]
		if n > batch {
			t.Fatalf("round %d deleted %d rows, more than the batch of %d", rounds+1, n, batch)
		}
		if stats.Total() == 0 {
			break
		}
		purged += n
	}
	elapsed := time.Since(start)
	t.Logf("purged %d expired access tokens in %d batches of %d in %v: %.0f rows/s",
		purged, rounds, batch, elapsed.Round(time.Millisecond), float64(purged)/elapsed.Seconds())
	if purged != expired {
		t.Errorf("purged %d rows, want %d", purged, expired)
	}
	var left, kept int
	err = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE expires_at < $1), count(*) FILTER (WHERE expires_at >= $1)
		FROM oauth2_access_tokens`, now).Scan(&left, &kept)
	if err != nil {
		t.Fatal(err)
	}
	if left != 0 || kept != live {
		t.Errorf("after the purge: %d expired rows left (want 0), %d unexpired kept (want %d)", left, kept, live)
	}
}
