package postgres

import (
	"context"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// Access-token lookups outside a transaction (introspection, /userinfo,
// every bearer check), and refresh-token lookups outside one (the first
// read of every refresh, and introspection), are read in batches, as access tokens are written
// (batchwrite.go): lookups that arrive while a batch is being read go
// together in the next one, one statement (signature = ANY) and one round
// trip for all of them. Nothing waits for a batch to fill, so an idle
// server reads each token at once. A batch is sent only after every one of
// its callers asked, so it sees every revocation committed before any of
// them did: introspection stays exact.

// scannedToken is one row of a session table as read, before its request
// is rebuilt (which needs the caller's session type).
type scannedToken struct {
	rec     storage.RequestRecord
	expires *time.Time
	active  bool
	client  storage.Client
}

func (r *scannedToken) dest() []any {
	return append([]any{&r.rec.Signature, &r.rec.RequestID, &r.rec.RequestedAt, &r.rec.ClientID,
		&r.rec.RequestedScopes, &r.rec.GrantedScopes, &r.rec.RequestedAudience, &r.rec.GrantedAudience,
		&r.rec.Form, &r.rec.Session, &r.rec.Subject, &r.expires, &r.active}, clientDest(&r.client)...)
}

type pendingGet struct {
	key  string
	done chan getResult // buffered: the reader never waits on a caller
}

type getResult struct {
	row *scannedToken // nil: no such token
	err error
}

type getBatcher struct {
	s     *Store
	table sessionTable
	// args returns the arguments of the table's active expression ($2 on),
	// taken when a batch is read (nil: none).
	args  func() []any
	queue batchQueue[*pendingGet]
}

func newGetBatcher(s *Store, t sessionTable, args func() []any) *getBatcher {
	return &getBatcher{s: s, table: t, args: args}
}

// get reads the row under key: fosite.ErrNotFound if there is none.
func (b *getBatcher) get(ctx context.Context, key string) (*scannedToken, error) {
	if knownDown(ctx) {
		return nil, errKnownUnavailable
	}
	p := &pendingGet{key: key, done: make(chan getResult, 1)}
	r, ok := submit(ctx, &b.queue, b.run, p, p.done)
	switch {
	case !ok:
		// A deadline is an outage (503), as on the unbatched path; a
		// caller that went away stays context.Canceled.
		return nil, noteDown(ctx, fositeErr("get "+b.table.what, ctx.Err()))
	case r.err != nil:
		return nil, noteDown(ctx, r.err)
	case r.row == nil:
		return nil, fosite.ErrNotFound
	}
	return r.row, nil
}

// run reads batches until nothing is pending, then ends; a batch whose
// statement failed for anything but an outage is read again key by key
// (eachSplit).
func (b *getBatcher) run() {
	b.queue.eachSplit(func(ctx context.Context, batch []*pendingGet) (func(), error) {
		found, err := b.read(ctx, batch)
		return func() { answerGets(batch, found, err) }, err
	}, func(p *pendingGet, err error) { p.done <- getResult{err: err} })
}

// read reads batch's rows with one statement, by signature.
func (b *getBatcher) read(ctx context.Context, batch []*pendingGet) (map[string]*scannedToken, error) {
	keys := make([]string, len(batch))
	for i, p := range batch {
		keys[i] = p.key
	}
	found := make(map[string]*scannedToken, len(batch))
	err := func() error {
		args := []any{keys}
		if b.args != nil {
			args = append(args, b.args()...)
		}
		rows, err := timed{q: b.s.pool, d: b.s.timeout}.Query(ctx, b.table.getMany, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r := &scannedToken{}
			if err := rows.Scan(r.dest()...); err != nil {
				return err
			}
			found[r.rec.Signature] = r
		}
		return rows.Err()
	}()
	return found, fositeErr("get "+b.table.what, err)
}

// answerGets answers batch's callers from found, or with err.
func answerGets(batch []*pendingGet, found map[string]*scannedToken, err error) {
	// Callers of one key each rebuild their own request: copies are made
	// before anyone gets the row.
	rows := make([]*scannedToken, len(batch))
	given := make(map[string]bool, len(found))
	for i, p := range batch {
		if rows[i] = found[p.key]; rows[i] != nil && given[p.key] {
			rows[i] = rows[i].clone()
		}
		given[p.key] = true
	}
	for i, p := range batch {
		p.done <- getResult{row: rows[i], err: err}
	}
}

// clone copies everything a caller rebuilding its request could change.
func (r *scannedToken) clone() *scannedToken {
	cp := *r
	c, rec := &cp.client, &cp.rec
	for _, s := range []*[]string{&rec.RequestedScopes, &rec.GrantedScopes, &rec.RequestedAudience, &rec.GrantedAudience,
		&c.GrantTypes, &c.Scopes, &c.Audience, &c.RedirectURIs, &c.AllowedCORSOrigins, &c.PostLogoutRedirectURIs} {
		*s = slices.Clone(*s)
	}
	rec.Session, c.SecretHash, c.WeChatAppSecret = slices.Clone(rec.Session), slices.Clone(c.SecretHash), slices.Clone(c.WeChatAppSecret)
	return &cp
}
