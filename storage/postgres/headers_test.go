package postgres_test

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// headerIndexes names, by table, the index on the header of its sealed
// column: one per kind in storage.SealedSpecs, named as SealedSpec says, so
// a kind added without the migration that indexes it fails here.
func headerIndexes() map[string]string {
	m := map[string]string{}
	for _, spec := range storage.SealedSpecs() {
		m[spec.Table] = spec.Table + "_" + spec.Column + "_header"
	}
	return m
}

// Every step of SealedHeaders' walk must be a probe of the header index:
// that is what keeps start-up cheap however many rows there are. As in
// TestPurgePlansUseIndexes, sequential scans and sorts are priced out so
// the plan shows whether the index can serve the query at all (an
// expression written differently from the indexed one cannot).
func TestSealedHeaderPlansUseIndexes(t *testing.T) {
	t.Parallel()
	_, pool, _ := postgrestest.NewStore(t)
	stmts, indexes := postgres.HeaderStatements(), headerIndexes()
	if len(stmts) != len(indexes) {
		t.Errorf("header statements for %d tables, want %d", len(stmts), len(indexes))
	}
	for table, sql := range stmts {
		index, ok := indexes[table]
		if !ok {
			t.Errorf("no header index known for %s", table)
			continue
		}
		// Both probes, the first and the recursive one, must use the index.
		plan := explain(t, pool, `SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off`, sql)
		if n := strings.Count(plan, "using "+index); n != 2 || strings.Contains(plan, "Seq Scan") ||
			strings.Contains(plan, "Sort") {
			t.Errorf("headers of %s are not read by probes of %s:\n%s", table, index, plan)
		}
	}
}

// actualRows matches the row counts of EXPLAIN ANALYZE nodes.
var actualRows = regexp.MustCompile(`actual rows=(\d+) loops=(\d+)`)

// On a table of realistic shape (thousands of identities sealed under a few
// secrets, some without a session key) the planner must choose the loose
// index scan by itself, no node may touch more than a handful of rows, and
// the answer must be every header once.
func TestSealedHeadersManyIdentities(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool, _ := postgrestest.NewStore(t)
	const identities = 5_000
	headers := [][]byte{
		{1, 0x10, 0x20, 0x30, 0x40},
		{1, 0x7f, 0x00, 0x00, 0x01},
		{2, 0x10, 0x20, 0x30, 0x40},
	}
	if _, err := pool.Exec(ctx, `INSERT INTO users (id, created_at, updated_at) VALUES ('u', now(), now())`); err != nil {
		t.Fatal(err)
	}
	// Headers interleaved over the primary key, every 50th identity without
	// a session key; the rest of each value differs per row.
	_, err := pool.Exec(ctx, `INSERT INTO wechat_identities (app_id, open_id, user_id, session_key, created_at, updated_at)
		SELECT 'wx' || (g % 7), 'o-' || g, 'u',
			CASE WHEN g % 50 = 0 THEN NULL ELSE ($1::bytea[])[g % 3 + 1] || sha256(g::text::bytea) END,
			now(), now()
		FROM generate_series(1, $2::int) g`, headers, identities)
	if err != nil {
		t.Fatalf("insert identities: %v", err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE wechat_identities`); err != nil {
		t.Fatal(err)
	}

	sql := postgres.HeaderStatements()["wechat_identities"]
	index := headerIndexes()["wechat_identities"]
	analyzed := explain(t, pool, "", "(ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "+sql)
	if strings.Count(analyzed, "using "+index) != 2 || strings.Contains(analyzed, "Seq Scan") {
		t.Errorf("headers plan on %d identities does not probe %s:\n%s", identities, index, analyzed)
	}
	for _, m := range actualRows.FindAllStringSubmatch(analyzed, -1) {
		rows, _ := strconv.Atoi(m[1])
		loops, _ := strconv.Atoi(m[2])
		// At most one row per distinct header per node, and one probe
		// more than there are headers.
		if rows*loops > len(headers)+1 {
			t.Errorf("a node of the headers query touched %d rows (%s); want at most %d, one per header:\n%s",
				rows*loops, m[0], len(headers)+1, analyzed)
			break
		}
	}

	got, err := s.SealedHeaders(ctx)
	if err != nil {
		t.Fatalf("SealedHeaders: %v", err)
	}
	want := map[storage.SealedKind][][]byte{storage.SealedSessionKey: headers}
	if len(got) != len(want) || len(got[storage.SealedSessionKey]) != len(headers) {
		t.Fatalf("SealedHeaders = %x, want %x", got, want)
	}
	for i, h := range got[storage.SealedSessionKey] {
		if !bytes.Equal(h, headers[i]) {
			t.Errorf("SealedHeaders = %x, want %x in this order (the index's)", got, want)
			break
		}
	}
}
