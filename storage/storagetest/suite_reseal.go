package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// The reseal function of these tests stands for re-encryption under a new
// WXIDP_SECRETS: it prefixes v2: to a value, and leaves a value that already
// has the prefix alone, as re-encryption leaves a value sealed under the
// current secret.
const v2Prefix = "v2:"

func v2(b []byte) []byte { return append([]byte(v2Prefix), b...) }

// sealedName names a value by kind and ID, as visits and fixtures key it.
func sealedName(kind storage.SealedKind, id ...string) string {
	return string(kind) + " " + strings.Join(id, "/")
}

// visits records what ResealAll handed reseal, by sealedName, and counts
// the calls. ResealAll may call reseal from any goroutine.
type visits struct {
	mu     sync.Mutex
	values map[string][]byte
	kinds  map[storage.SealedKind]int
	calls  int
	dupes  []string
	// misshapen lists values whose ID does not fit their kind's
	// storage.SealedSpec: their associated data could not be rebuilt.
	misshapen []string
}

func newVisits() *visits {
	return &visits{values: map[string][]byte{}, kinds: map[storage.SealedKind]int{}}
}

func (v *visits) record(sv storage.Sealed) {
	v.mu.Lock()
	defer v.mu.Unlock()
	name := sealedName(sv.Kind, sv.ID...)
	if _, ok := v.values[name]; ok {
		v.dupes = append(v.dupes, name)
	}
	if _, err := sv.AAD(); err != nil {
		v.misshapen = append(v.misshapen, name)
	}
	v.values[name] = bytes.Clone(sv.Value)
	v.kinds[sv.Kind]++
	v.calls++
}

// upgrade is the reseal function above, recording every call in v.
func (v *visits) upgrade(sv storage.Sealed) ([]byte, error) {
	v.record(sv)
	if bytes.HasPrefix(sv.Value, []byte(v2Prefix)) {
		return sv.Value, nil
	}
	return v2(sv.Value), nil
}

// sealedFixture is one value of each kind to reseal, one already current,
// and rows of each table holding no value, which must not be visited. It is
// fixed, so parallel cases may share one.
type sealedFixture struct {
	identities [][2]string // (appid, openid) of every identity created
	apps       []string    // appids with a token row
	values     map[string][]byte
}

var (
	fixtureKeys = []*storage.SigningKey{
		newKey("k-active", storage.KeyActive, keyBase), newKey("k-next", storage.KeyNext, keyBase),
	}
	fixtureSessions = []struct {
		app, openID string
		key         []byte
	}{{appA, "o-1", []byte("sealed-session-1")}, {appB, "o-2", nil}}
	fixtureTokens = map[string]string{appA: "tok-a", appC: v2Prefix + "tok-c"}
)

func newSealedFixture() *sealedFixture {
	f := &sealedFixture{values: map[string][]byte{}}
	for _, k := range fixtureKeys {
		f.values[sealedName(storage.SealedSigningKey, k.KID)] = k.PrivateKey
	}
	c1 := newClient("c1")
	f.values[sealedName(storage.SealedAppSecret, "c1", c1.WeChatAppID)] = c1.WeChatAppSecret
	for _, l := range fixtureSessions {
		f.identities = append(f.identities, [2]string{l.app, l.openID})
		if l.key != nil {
			f.values[sealedName(storage.SealedSessionKey, l.app, l.openID)] = l.key
		}
	}
	for app, tok := range fixtureTokens {
		f.apps = append(f.apps, app)
		f.values[sealedName(storage.SealedWeChatToken, app)] = []byte(tok)
	}
	f.apps = append(f.apps, appB) // a lease only
	return f
}

// create writes the fixture's rows.
func (f *sealedFixture) create(t *testing.T, ctx context.Context, s storage.Store) {
	t.Helper()
	for _, k := range fixtureKeys {
		k := *k
		if err := s.CreateSigningKey(ctx, &k); err != nil {
			t.Fatalf("CreateSigningKey: %v", err)
		}
	}
	mustCreateClient(t, ctx, s, "c1")
	c2 := newClient("c2")
	c2.WeChatAppSecret = nil
	if err := s.CreateClient(ctx, c2); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	for _, l := range fixtureSessions {
		id := &storage.WeChatIdentity{AppID: l.app, OpenID: l.openID, SessionKey: l.key}
		if _, err := s.LinkWeChatIdentity(ctx, id, "user-"+l.openID); err != nil {
			t.Fatalf("LinkWeChatIdentity: %v", err)
		}
	}
	for app, tok := range fixtureTokens {
		if err := s.SaveWeChatToken(ctx, &storage.WeChatToken{AppID: app, Token: []byte(tok)}); err != nil {
			t.Fatalf("SaveWeChatToken: %v", err)
		}
	}
	// A token row holding only a lease has no token to reseal.
	checkLease(t, ctx, s, appB, time.Now(), time.Minute, true)
}

// read returns every sealed value the store holds among f's rows, by
// sealedName, through the store's ordinary getters.
func (f *sealedFixture) read(t *testing.T, ctx context.Context, s storage.Store) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	keys, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	for _, k := range keys {
		got[sealedName(storage.SealedSigningKey, k.KID)] = k.PrivateKey
	}
	clients, err := s.ListClients(ctx)
	if err != nil {
		t.Fatalf("ListClients: %v", err)
	}
	for _, c := range clients {
		if len(c.WeChatAppSecret) > 0 {
			got[sealedName(storage.SealedAppSecret, c.ID, c.WeChatAppID)] = c.WeChatAppSecret
		}
	}
	for _, id := range f.identities {
		i, err := s.GetWeChatIdentity(ctx, id[0], id[1])
		if err != nil {
			t.Fatalf("GetWeChatIdentity(%s, %s): %v", id[0], id[1], err)
		}
		if i.SessionKey != nil {
			got[sealedName(storage.SealedSessionKey, id[0], id[1])] = i.SessionKey
		}
	}
	for _, app := range f.apps {
		tok, err := s.GetWeChatToken(ctx, app)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("GetWeChatToken(%s): %v", app, err)
		}
		got[sealedName(storage.SealedWeChatToken, app)] = tok.Token
	}
	return got
}

// upgraded returns f's values as upgrade leaves them.
func (f *sealedFixture) upgraded() map[string][]byte {
	want := map[string][]byte{}
	for name, v := range f.values {
		want[name] = v
		if !bytes.HasPrefix(v, []byte(v2Prefix)) {
			want[name] = v2(v)
		}
	}
	return want
}

// checkSealed fails unless got and want hold the same names and values.
func checkSealed(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	for name, w := range want {
		if g, ok := got[name]; !ok || !bytes.Equal(g, w) {
			t.Errorf("%s: %s = %q (present %v), want %q", what, name, g, ok, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected %s", what, name)
		}
	}
}

func mustReseal(t *testing.T, ctx context.Context, s storage.Resealer, reseal func(storage.Sealed) ([]byte, error), want int) {
	t.Helper()
	if n, err := s.ResealAll(ctx, reseal); err != nil || n != want {
		t.Fatalf("ResealAll = %d, %v; want %d, nil", n, err, want)
	}
}

func testReseal(t *testing.T, su suite) {
	su.runReseal(t, "EmptyStore", func(t *testing.T, ctx context.Context, s resealStore) {
		v := newVisits()
		mustReseal(t, ctx, s, v.upgrade, 0)
		if v.calls != 0 {
			t.Errorf("reseal called %d times on an empty store", v.calls)
		}
	})

	su.runReseal(t, "VisitsEveryKind", func(t *testing.T, ctx context.Context, s resealStore) {
		f := newSealedFixture()
		f.create(t, ctx, s)
		c1, err := s.LookupClient(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.GetWeChatToken(ctx, appA)
		if err != nil {
			t.Fatal(err)
		}
		v := newVisits()
		mustReseal(t, ctx, s, v.upgrade, len(f.values)-1) // all but the current token
		checkSealed(t, "values handed to reseal", v.values, f.values)
		if len(v.dupes) > 0 {
			t.Errorf("visited more than once: %q", v.dupes)
		}
		// Every kind storage.SealedSpecs lists is walked, each value with
		// an ID its associated data can be rebuilt from.
		checkEveryKind(t, "values handed to reseal", v.kinds)
		if len(v.misshapen) > 0 {
			t.Errorf("IDs that do not fit their kind's SealedSpec: %q", v.misshapen)
		}
		checkSealed(t, "values after ResealAll", f.read(t, ctx, s), f.upgraded())
		// Resealing is no update: the secret behind the value is the same.
		if got, err := s.LookupClient(ctx, "c1"); err != nil || !got.UpdatedAt.Equal(c1.UpdatedAt) {
			t.Errorf("client UpdatedAt after ResealAll = %v, %v; want %v", got.UpdatedAt, err, c1.UpdatedAt)
		}
		if got, err := s.GetWeChatToken(ctx, appA); err != nil || !got.UpdatedAt.Equal(tok.UpdatedAt) {
			t.Errorf("token UpdatedAt after ResealAll = %v, %v; want %v", got.UpdatedAt, err, tok.UpdatedAt)
		}
		// Everything is current now: a second run visits all, writes none.
		again := newVisits()
		mustReseal(t, ctx, s, again.upgrade, 0)
		checkSealed(t, "values handed to the second reseal", again.values, f.upgraded())
	})

	su.runReseal(t, "ErrorStops", func(t *testing.T, ctx context.Context, s resealStore) {
		f := newSealedFixture()
		f.create(t, ctx, s)
		errBoom := errors.New("boom")
		const failAt = 3
		v := newVisits()
		want := maps.Clone(f.values)
		n, err := s.ResealAll(ctx, func(sv storage.Sealed) ([]byte, error) {
			out, _ := v.upgrade(sv)
			if v.calls == failAt {
				return nil, errBoom
			}
			want[sealedName(sv.Kind, sv.ID...)] = out
			return out, nil
		})
		if !errors.Is(err, errBoom) {
			t.Errorf("ResealAll error = %v, want it to wrap the reseal error", err)
		}
		if v.calls != failAt {
			t.Errorf("reseal called %d times, want %d: the first error stops the walk", v.calls, failAt)
		}
		// Values resealed before the error are stored, and counted.
		if rewritten := countChanged(f.values, want); n != rewritten {
			t.Errorf("ResealAll = %d, want %d (the values resealed before the error)", n, rewritten)
		}
		checkSealed(t, "values after the failed ResealAll", f.read(t, ctx, s), want)
	})

	// A value rewritten while ResealAll runs was sealed by a current process
	// and must not be replaced by the reseal of its old version; nor may a
	// deleted row come back.
	su.runReseal(t, "ConcurrentChangeKept", func(t *testing.T, ctx context.Context, s resealStore) {
		active := newKey("k-active", storage.KeyActive, keyBase)
		old := newKey("k-old", storage.KeyRetired, keyBase)
		for _, k := range []*storage.SigningKey{active, old} {
			if err := s.CreateSigningKey(ctx, k); err != nil {
				t.Fatalf("CreateSigningKey: %v", err)
			}
		}
		mustCreateClient(t, ctx, s, "c1")
		mustCreateClient(t, ctx, s, "c2")
		mustLink(t, ctx, s, login{appA, "o-1", "", "user-1"})
		if err := s.SaveWeChatToken(ctx, &storage.WeChatToken{AppID: appA, Token: []byte("tok-a")}); err != nil {
			t.Fatalf("SaveWeChatToken: %v", err)
		}
		f := &sealedFixture{identities: [][2]string{{appA, "o-1"}}, apps: []string{appA}}
		v := newVisits()
		n, err := s.ResealAll(ctx, func(sv storage.Sealed) ([]byte, error) {
			if err := changeBehind(ctx, s, sv); err != nil {
				return nil, err
			}
			return v.upgrade(sv)
		})
		if err != nil || n != 1 {
			t.Errorf("ResealAll = %d, %v; want 1 (only k-active was left alone), nil", n, err)
		}
		checkSealed(t, "values after ResealAll", f.read(t, ctx, s), map[string][]byte{
			sealedName(storage.SealedSigningKey, "k-active"):          v2(active.PrivateKey),
			sealedName(storage.SealedAppSecret, "c1", "wxc1"):         []byte("fresh-secret"),
			sealedName(storage.SealedAppSecret, "c2", "wxc2-renamed"): newClient("c2").WeChatAppSecret,
			sealedName(storage.SealedSessionKey, appA, "o-1"):         []byte("fresh-session"),
			sealedName(storage.SealedWeChatToken, appA):               []byte("fresh-token"),
		})
	})

	// More rows than one batch, over a composite primary key whose pages
	// end inside one appid and across two.
	su.runReseal(t, "ManyBatches", func(t *testing.T, ctx context.Context, s resealStore) {
		const perApp = 600
		var ids [][2]string
		for _, app := range []string{appA, appB} {
			for i := range perApp {
				ids = append(ids, [2]string{app, fmt.Sprintf("o-%04d", i)})
			}
		}
		errs := parallel(8, func(w int) error {
			for i := w; i < len(ids); i += 8 {
				id := &storage.WeChatIdentity{AppID: ids[i][0], OpenID: ids[i][1], SessionKey: []byte("sk-" + ids[i][1])}
				if _, err := s.LinkWeChatIdentity(ctx, id, "user-"+ids[i][0]+ids[i][1]); err != nil {
					return err
				}
			}
			return nil
		})
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("LinkWeChatIdentity: %v", err)
		}
		v := newVisits()
		mustReseal(t, ctx, s, v.upgrade, len(ids))
		if len(v.values) != len(ids) || len(v.dupes) > 0 {
			t.Errorf("reseal saw %d distinct values (%d repeats), want %d once each", len(v.values), len(v.dupes), len(ids))
		}
		f := &sealedFixture{identities: ids}
		for name, val := range f.read(t, ctx, s) {
			if !bytes.HasPrefix(val, []byte(v2Prefix)) {
				t.Errorf("%s = %q after ResealAll, want it resealed", name, val)
			}
		}
	})
}

// changeBehind changes the row sv came from through the store, as another
// process could between ResealAll's read and its write: k-old is deleted,
// c1 gets a new secret, c2 a new appid (its secret, bound to the old one,
// is thereby stale too), o-1 logs in again, and appA's token is refreshed.
func changeBehind(ctx context.Context, s storage.Store, sv storage.Sealed) error {
	switch name := sealedName(sv.Kind, sv.ID...); name {
	case sealedName(storage.SealedSigningKey, "k-old"):
		_, err := s.DeleteRetiredSigningKeys(ctx, time.Now())
		return err
	case sealedName(storage.SealedAppSecret, "c1", "wxc1"), sealedName(storage.SealedAppSecret, "c2", "wxc2"):
		c, err := s.LookupClient(ctx, sv.ID[0])
		if err != nil {
			return err
		}
		if c.ID == "c1" {
			c.WeChatAppSecret = []byte("fresh-secret")
		} else {
			c.WeChatAppID += "-renamed"
		}
		return s.UpdateClient(ctx, c, time.Time{})
	case sealedName(storage.SealedSessionKey, appA, "o-1"):
		_, err := s.LinkWeChatIdentity(ctx, &storage.WeChatIdentity{AppID: appA, OpenID: "o-1",
			SessionKey: []byte("fresh-session")}, "user-1")
		return err
	case sealedName(storage.SealedWeChatToken, appA):
		return s.SaveWeChatToken(ctx, &storage.WeChatToken{AppID: appA, Token: []byte("fresh-token")})
	}
	return nil
}

// countChanged counts the names whose value differs between a and b.
func countChanged(a, b map[string][]byte) int {
	n := 0
	for name, v := range a {
		if !bytes.Equal(v, b[name]) {
			n++
		}
	}
	return n
}

// resealTxCases run ResealAll inside a transaction: Rollback must restore
// every value it rewrote. They are run only for stores that reseal.
func (su suite) resealTxCases() []txCase {
	if !su.resealer {
		return nil
	}
	f := newSealedFixture()
	return []txCase{{
		name:  "ResealAll",
		setup: f.create,
		write: func(ctx context.Context, s storage.Store) error {
			n, err := s.(storage.Resealer).ResealAll(ctx, newVisits().upgrade)
			if want := countChanged(f.values, f.upgraded()); err == nil && n != want {
				err = fmt.Errorf("ResealAll = %d, want %d", n, want)
			}
			return err
		},
		before: func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			checkSealed(t, "values", f.read(t, ctx, s), f.values)
		},
		after: func(t *testing.T, ctx context.Context, s storage.Store) {
			t.Helper()
			checkSealed(t, "values", f.read(t, ctx, s), f.upgraded())
		},
	}}
}
