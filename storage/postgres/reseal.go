package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/storage"
)

// resealBatch is how many values ResealAll reads at once: one page of the
// primary key index and one round trip of updates, small enough that a
// batch's row locks are held only briefly.
const resealBatch = 500

var _ storage.Resealer = (*Store)(nil)

// sealedColumn is one column holding values sealed under WXIDP_SECRETS,
// with the statements derived from its storage.SealedSpec.
type sealedColumn struct {
	kind  storage.SealedKind
	table string
	// idCols are the text columns that make storage.Sealed.ID, in its
	// order; the first nKey of them are the primary key.
	idCols []string
	nKey   int
	// Statements built by newSealedColumn: the first page, the page after a
	// key, the compare-and-set update, and the distinct headers.
	first, after, update, headers string
}

func newSealedColumn(spec storage.SealedSpec) sealedColumn {
	table, column, idCols, nKey := spec.Table, spec.Column, spec.IDColumns, spec.KeyColumns
	key := strings.Join(idCols[:nKey], ", ")
	sel := `SELECT ` + strings.Join(idCols, ", ") + `, ` + column + ` FROM ` + table +
		` WHERE ` + column + ` IS NOT NULL`
	order := ` ORDER BY ` + key + ` LIMIT ` + strconv.Itoa(resealBatch)
	// Placeholders: the key of the previous page's last row for `after`;
	// the new value, the old value and then every ID column for `update`.
	// The update matches the ID columns beyond the key too: they are what
	// the value is sealed to, so a row whose appid changed meanwhile is as
	// changed as one whose value did.
	match := make([]string, len(idCols))
	for i, c := range idCols {
		match[i] = c + ` = $` + strconv.Itoa(i+3)
	}
	return sealedColumn{
		kind: spec.Kind, table: table, idCols: idCols, nKey: nKey,
		first: sel + order,
		after: sel + ` AND (` + key + `) > (` + placeholders(1, nKey) + `)` + order,
		update: `UPDATE ` + table + ` SET ` + column + ` = $1 WHERE ` + column + ` = $2 AND ` +
			strings.Join(match, ` AND `),
		headers: headersStatement(table, column),
	}
}

// headersStatement returns the query listing the distinct headers of
// table's column in ascending order, by a loose index scan: the first step
// takes the smallest header, and each further step one probe of the
// column's header index (migration 00005) for the smallest header above
// the previous one, until there is none. The cost is the number of
// distinct headers times an index descent, however many rows share them.
// The header expression must stay exactly the one indexed, or the planner
// cannot match it. A value shorter than a header comes out whole
// (substring stops at its end).
//
// The step is a LATERAL subquery rather than a scalar subquery in the
// select list: the recursion then ends by itself when a probe finds
// nothing, with no NULL to filter out, and plain EXPLAIN shows the probe.
func headersStatement(table, column string) string {
	h := `substring(` + column + ` from 1 for ` + strconv.Itoa(storage.SealedHeaderLen) + `)`
	from := ` FROM ` + table + ` WHERE ` + column + ` IS NOT NULL`
	return `WITH RECURSIVE h AS (
	(SELECT ` + h + ` AS v` + from + ` ORDER BY 1 LIMIT 1)
	UNION ALL
	SELECT n.v FROM h, LATERAL (SELECT ` + h + ` AS v` + from + ` AND ` + h + ` > h.v ORDER BY 1 LIMIT 1) n
) SELECT v FROM h`
}

// placeholders returns "$from, ..." for n parameters.
func placeholders(from, n int) string {
	p := make([]string, n)
	for i := range p {
		p[i] = `$` + strconv.Itoa(from+i)
	}
	return strings.Join(p, ", ")
}

// sealedColumns has a column per kind of sealed value, walked in the order
// of storage.SealedSpecs. NULL values (no app secret registered, no session
// key, a token row holding only a lease) are not values and are skipped.
var sealedColumns = newSealedColumns()

func newSealedColumns() []sealedColumn {
	specs := storage.SealedSpecs()
	cols := make([]sealedColumn, len(specs))
	for i, spec := range specs {
		cols[i] = newSealedColumn(spec)
	}
	return cols
}

// sealedRow is one value as read, with its ID.
type sealedRow struct {
	id    []string
	value []byte
}

// ResealAll walks every sealed column by keyset pagination over its primary
// key, so no more than one batch is in memory and each page is an index
// range scan however large the table. Each batch is read first and its
// connection released before reseal runs, so reseal may use the store (or
// the transaction in ctx). Changed values are written back by
// compare-and-set updates, sent together in one round trip: a row whose
// value (or ID) changed since it was read matches nothing and keeps the
// newer value, which a current process sealed. Rows inserted behind the
// walk are missed for the same reason, and resealing leaves updated_at
// alone: the secret behind the value is unchanged.
//
// A reseal error, or an empty result (which would store "none"), stops the
// walk: the batch's values resealed before it are still written and
// counted. A database error is returned with the count of the batches
// written before it: a batch's updates run in one implicit transaction, so
// a failed batch writes nothing.
func (s *Store) ResealAll(ctx context.Context, reseal func(storage.Sealed) ([]byte, error)) (int, error) {
	total := 0
	for _, c := range sealedColumns {
		n, err := s.resealColumn(ctx, c, reseal)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *Store) resealColumn(ctx context.Context, c sealedColumn, reseal func(storage.Sealed) ([]byte, error)) (int, error) {
	op := "reseal " + string(c.kind)
	total := 0
	var last []string // the ID of the previous page's last row
	for {
		page, err := s.sealedPage(ctx, c, last)
		if err != nil {
			return total, recordErr(op, err)
		}
		updates := &pgx.Batch{}
		var written []string // first ID columns: for clients, the ids the cache drops
		var stop error
		for _, r := range page {
			// reseal gets copies: it may not change what the update
			// compares against.
			out, err := reseal(storage.Sealed{Kind: c.kind, ID: slices.Clone(r.id), Value: bytes.Clone(r.value)})
			if err == nil && len(out) == 0 {
				err = errors.New("reseal returned an empty value")
			}
			if err != nil {
				stop = fmt.Errorf("postgres: %s: %w", op, err)
				break
			}
			if bytes.Equal(out, r.value) {
				continue
			}
			args := []any{out, r.value}
			for _, part := range r.id {
				args = append(args, part)
			}
			updates.Queue(c.update, args...)
			written = append(written, r.id[0])
		}
		n, err := s.sendUpdates(ctx, updates)
		if c.table == "clients" && len(written) > 0 {
			s.clientsWritten(ctx, written...)
		}
		total += n
		if err != nil {
			return total, recordErr(op, err)
		}
		if stop != nil || len(page) < resealBatch {
			return total, stop
		}
		last = page[len(page)-1].id
	}
}

// sealedPage reads the batch of c's values after last (from the start when
// last is nil), fully, so the connection is free again when it returns.
func (s *Store) sealedPage(ctx context.Context, c sealedColumn, last []string) ([]sealedRow, error) {
	sql, args := c.first, []any(nil)
	if last != nil {
		sql = c.after
		for _, part := range last[:c.nKey] {
			args = append(args, part)
		}
	}
	rows, err := s.db(ctx).Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (sealedRow, error) {
		r := sealedRow{id: make([]string, len(c.idCols))}
		dest := make([]any, 0, len(c.idCols)+1)
		for i := range r.id {
			dest = append(dest, &r.id[i])
		}
		err := row.Scan(append(dest, &r.value)...)
		return r, err
	})
}

// sendUpdates runs the queued compare-and-set updates in one round trip and
// returns how many rows they changed.
func (s *Store) sendUpdates(ctx context.Context, b *pgx.Batch) (int, error) {
	if b.Len() == 0 {
		return 0, nil
	}
	br := s.db(ctx).SendBatch(ctx, b)
	n := 0
	for range b.Len() {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return 0, err
		}
		n += int(tag.RowsAffected())
	}
	if err := br.Close(); err != nil {
		return 0, err
	}
	return n, nil
}

// SealedHeaders runs the headers statement of every sealed column (see
// headersStatement) in one round trip. Kinds without values are absent.
func (s *Store) SealedHeaders(ctx context.Context) (map[storage.SealedKind][][]byte, error) {
	b := &pgx.Batch{}
	for _, c := range sealedColumns {
		b.Queue(c.headers)
	}
	br := s.db(ctx).SendBatch(ctx, b)
	out := map[storage.SealedKind][][]byte{}
	for _, c := range sealedColumns {
		rows, err := br.Query()
		if err == nil {
			var hs [][]byte
			hs, err = pgx.CollectRows(rows, pgx.RowTo[[]byte])
			if len(hs) > 0 {
				out[c.kind] = hs
			}
		}
		if err != nil {
			_ = br.Close()
			return nil, recordErr("sealed headers of "+string(c.kind), err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, recordErr("sealed headers", err)
	}
	return out, nil
}
