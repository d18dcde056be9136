package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/wxidp/wxidp/storage"
)

// resealBatch matches the PostgreSQL backend's batch: the mutex is taken
// once per batch to read and once to write, and never held while reseal
// runs, so reseal may use the store.
const resealBatch = 500

// sealedSet gives ResealAll access to one kind of sealed value. Its
// functions run under the store mutex.
type sealedSet struct {
	kind storage.SealedKind
	// ids lists the ID of every value present.
	ids func() [][]string
	// get returns the value with that ID, if present and still bound to
	// every ID part (a client whose appid changed is not the value read).
	get func(id []string) ([]byte, bool)
	// set stores v, which the caller has copied, as the value with that ID.
	set func(t *tx, id []string, v []byte)
}

// sealedSets lists the kinds in the order the PostgreSQL backend walks
// them. Absent values (no app secret, no session key, a token row holding
// only a lease) are not listed, as NULLs are skipped there; an empty app
// secret counts as absent because PostgreSQL stores it as NULL.
func (s *Store) sealedSets() []sealedSet {
	return []sealedSet{{
		kind: storage.SealedSigningKey,
		ids: func() (ids [][]string) {
			for kid := range s.keys {
				ids = append(ids, []string{kid})
			}
			return ids
		},
		get: func(id []string) ([]byte, bool) {
			k, ok := s.keys[id[0]]
			return k.PrivateKey, ok
		},
		set: func(t *tx, id []string, v []byte) {
			k := s.keys[id[0]]
			k.PrivateKey = v
			put(t, s.keys, id[0], k)
		},
	}, {
		kind: storage.SealedAppSecret,
		ids: func() (ids [][]string) {
			for _, c := range s.clients {
				if len(c.WeChatAppSecret) > 0 {
					ids = append(ids, []string{c.ID, c.WeChatAppID})
				}
			}
			return ids
		},
		get: func(id []string) ([]byte, bool) {
			c, ok := s.clients[id[0]]
			return c.WeChatAppSecret, ok && c.WeChatAppID == id[1] && len(c.WeChatAppSecret) > 0
		},
		set: func(t *tx, id []string, v []byte) {
			// A fresh copy: the undo log keeps the old client, whose slices
			// must stay as they were.
			c := s.clients[id[0]]
			c = copyClient(&c)
			c.WeChatAppSecret = v
			put(t, s.clients, id[0], c)
		},
	}, {
		kind: storage.SealedSessionKey,
		ids: func() (ids [][]string) {
			for k, i := range s.identities {
				if i.SessionKey != nil {
					ids = append(ids, []string{k.appID, k.openID})
				}
			}
			return ids
		},
		get: func(id []string) ([]byte, bool) {
			i, ok := s.identities[identityKey{id[0], id[1]}]
			return i.SessionKey, ok && i.SessionKey != nil
		},
		set: func(t *tx, id []string, v []byte) {
			key := identityKey{id[0], id[1]}
			i := s.identities[key]
			i.SessionKey = v
			put(t, s.identities, key, i)
		},
	}, {
		kind: storage.SealedWeChatToken,
		ids: func() (ids [][]string) {
			for app, r := range s.wxTokens {
				if r.hasToken {
					ids = append(ids, []string{app})
				}
			}
			return ids
		},
		get: func(id []string) ([]byte, bool) {
			r, ok := s.wxTokens[id[0]]
			return r.token.Token, ok && r.hasToken
		},
		set: func(t *tx, id []string, v []byte) {
			r := s.wxTokens[id[0]]
			r.token.Token = v
			put(t, s.wxTokens, id[0], r)
		},
	}}
}

// ResealAll walks every sealed value, in ID order within each kind, and
// stores reseal's result where it differs, by compare-and-set: a value
// changed (or gone) since its batch was read keeps the newer value. Values
// added after a kind's walk began are not visited; a current process
// sealed them. Like the PostgreSQL backend, a reseal error or empty result
// stops the walk and is returned, after writing the batch's values resealed
// before it; the count covers every value written.
func (s *Store) ResealAll(ctx context.Context, reseal func(storage.Sealed) ([]byte, error)) (int, error) {
	total := 0
	for _, set := range s.sealedSets() {
		n, err := s.resealSet(ctx, set, reseal)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// resealed is one value read, and what reseal made of it.
type resealed struct {
	id       []string
	old, new []byte
}

func (s *Store) resealSet(ctx context.Context, set sealedSet, reseal func(storage.Sealed) ([]byte, error)) (int, error) {
	if _, err := s.lock(ctx); err != nil {
		return 0, err
	}
	ids := set.ids()
	s.mu.Unlock()
	slices.SortFunc(ids, slices.Compare)

	total := 0
	for len(ids) > 0 {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		batch := ids[:min(resealBatch, len(ids))]
		ids = ids[len(batch):]
		vals, err := s.readSealed(ctx, set, batch)
		if err != nil {
			return total, err
		}
		var stop error
		changed := vals[:0]
		for _, v := range vals {
			// reseal gets copies: it may not change what the write compares
			// against.
			out, err := reseal(storage.Sealed{Kind: set.kind, ID: slices.Clone(v.id), Value: bytes.Clone(v.old)})
			if err == nil && len(out) == 0 {
				err = errors.New("reseal returned an empty value")
			}
			if err != nil {
				stop = fmt.Errorf("memory: reseal %s: %w", set.kind, err)
				break
			}
			if !bytes.Equal(out, v.old) {
				v.new = bytes.Clone(out)
				changed = append(changed, v)
			}
		}
		n, err := s.writeSealed(ctx, set, changed)
		total += n
		if err != nil {
			return total, err
		}
		if stop != nil {
			return total, stop
		}
	}
	return total, nil
}

// readSealed copies out the values of batch still present.
func (s *Store) readSealed(ctx context.Context, set sealedSet, batch [][]string) ([]resealed, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	vals := make([]resealed, 0, len(batch))
	for _, id := range batch {
		if v, ok := set.get(id); ok {
			vals = append(vals, resealed{id: id, old: bytes.Clone(v)})
		}
	}
	return vals, nil
}

// writeSealed stores each new value whose old one is still in place, and
// returns how many it stored.
func (s *Store) writeSealed(ctx context.Context, set sealedSet, changed []resealed) (int, error) {
	if len(changed) == 0 {
		return 0, nil
	}
	t, err := s.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for _, v := range changed {
		if cur, ok := set.get(v.id); ok && bytes.Equal(cur, v.old) {
			set.set(t, v.id, v.new)
			n++
		}
	}
	return n, nil
}

// SealedHeaders returns, per kind, the distinct first SealedHeaderLen bytes
// of the values ResealAll would visit, in ascending order as the PostgreSQL
// backend lists them; a shorter value is its own header. Kinds without
// values are absent.
func (s *Store) SealedHeaders(ctx context.Context) (map[storage.SealedKind][][]byte, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := map[storage.SealedKind][][]byte{}
	for _, set := range s.sealedSets() {
		var hs [][]byte
		seen := map[string]bool{}
		for _, id := range set.ids() {
			v, ok := set.get(id)
			if !ok {
				continue
			}
			h := v[:min(len(v), storage.SealedHeaderLen)]
			if !seen[string(h)] {
				seen[string(h)] = true
				hs = append(hs, bytes.Clone(h))
			}
		}
		if len(hs) > 0 {
			slices.SortFunc(hs, bytes.Compare)
			out[set.kind] = hs
		}
	}
	return out, nil
}
