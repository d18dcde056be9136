package storagetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// sealedKinds lists every kind of sealed value: storage.SealedSpecs is the
// one list of them.
func sealedKinds() []storage.SealedKind {
	var kinds []storage.SealedKind
	for _, spec := range storage.SealedSpecs() {
		kinds = append(kinds, spec.Kind)
	}
	return kinds
}

// checkEveryKind fails unless kinds holds every kind of sealed value: the
// cases that say they cover every kind must grow with storage.SealedSpecs.
func checkEveryKind[V any](t *testing.T, what string, kinds map[storage.SealedKind]V) {
	t.Helper()
	for _, kind := range sealedKinds() {
		if _, ok := kinds[kind]; !ok {
			t.Errorf("%s: no %s value; add one to the case", what, kind)
		}
	}
}

// Headers of the SealedHeaders cases: a format version and a 4-byte
// fingerprint each, all different, so a value counted under the wrong kind
// or cut at the wrong length shows.
var (
	hdrOld   = []byte{1, 0xa1, 0xa2, 0xa3, 0xa4}
	hdrNew   = []byte{1, 0xb1, 0xb2, 0xb3, 0xb4}
	hdrOther = []byte{1, 0xc1, 0xc2, 0xc3, 0xc4}
	hdrV2    = []byte{2, 0xa1, 0xa2, 0xa3, 0xa4} // hdrOld's fingerprint, another format
)

// sealedUnder returns a value that starts with header, followed by a body
// naming what it is, so values sharing a header still differ.
func sealedUnder(header []byte, body string) []byte {
	return append(bytes.Clone(header), "|sealed "+body...)
}

// headerSet is SealedHeaders' result in a form to compare: per kind, the
// headers as strings, sorted. Kinds without headers are left out, so absent
// and empty compare equal.
func headerSet(m map[storage.SealedKind][][]byte) map[storage.SealedKind][]string {
	out := map[storage.SealedKind][]string{}
	for kind, hs := range m {
		if len(hs) == 0 {
			continue
		}
		s := make([]string, len(hs))
		for i, h := range hs {
			s[i] = string(h)
		}
		slices.Sort(s)
		out[kind] = s
	}
	return out
}

// checkHeaders fails unless SealedHeaders reports exactly want, each
// kind's headers once.
func checkHeaders(t *testing.T, ctx context.Context, s storage.Resealer, want map[storage.SealedKind][][]byte) {
	t.Helper()
	got, err := s.SealedHeaders(ctx)
	if err != nil {
		t.Fatalf("SealedHeaders: %v", err)
	}
	for kind, hs := range got {
		if !slices.Contains(sealedKinds(), kind) {
			t.Errorf("SealedHeaders reports unknown kind %q", kind)
		}
		for i, h := range hs {
			if len(h) > storage.SealedHeaderLen {
				t.Errorf("SealedHeaders[%s] holds %x, longer than a header", kind, h)
			}
			for _, o := range hs[:i] {
				if bytes.Equal(h, o) {
					t.Errorf("SealedHeaders[%s] lists %x twice", kind, h)
				}
			}
		}
	}
	g, w := headerSet(got), headerSet(want)
	for _, kind := range sealedKinds() {
		if !slices.Equal(g[kind], w[kind]) {
			t.Errorf("SealedHeaders[%s] = %x, want %x", kind, g[kind], w[kind])
		}
	}
}

func testSealedHeaders(t *testing.T, su suite) {
	su.runReseal(t, "EmptyStore", func(t *testing.T, ctx context.Context, s resealStore) {
		checkHeaders(t, ctx, s, nil)
	})

	// Rows holding no value (a client without an app secret, an identity
	// without a session key, a token row holding only a lease) add nothing.
	su.runReseal(t, "RowsWithoutValues", func(t *testing.T, ctx context.Context, s resealStore) {
		c := newClient("c1")
		c.WeChatAppSecret = nil
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatalf("CreateClient: %v", err)
		}
		if _, err := s.LinkWeChatIdentity(ctx, &storage.WeChatIdentity{AppID: appA, OpenID: "o-1"}, "user-1"); err != nil {
			t.Fatalf("LinkWeChatIdentity: %v", err)
		}
		checkLease(t, ctx, s, appA, time.Now(), time.Minute, true)
		checkHeaders(t, ctx, s, nil)
	})

	su.runReseal(t, "EveryKind", func(t *testing.T, ctx context.Context, s resealStore) {
		for _, k := range []struct {
			kid    string
			state  storage.KeyState
			header []byte
		}{{"k-retired", storage.KeyRetired, hdrOld}, {"k-active", storage.KeyActive, hdrNew}, {"k-next", storage.KeyNext, hdrV2}} {
			key := newKey(k.kid, k.state, keyBase)
			key.PrivateKey = sealedUnder(k.header, k.kid)
			if err := s.CreateSigningKey(ctx, key); err != nil {
				t.Fatalf("CreateSigningKey(%s): %v", k.kid, err)
			}
		}
		for id, header := range map[string][]byte{"c1": hdrNew, "c2": hdrOther} {
			c := newClient(id)
			c.WeChatAppSecret = sealedUnder(header, id)
			if err := s.CreateClient(ctx, c); err != nil {
				t.Fatalf("CreateClient(%s): %v", id, err)
			}
		}
		for i, header := range [][]byte{hdrOld, hdrOther} {
			openID := fmt.Sprintf("o-%d", i)
			id := &storage.WeChatIdentity{AppID: appA, OpenID: openID, SessionKey: sealedUnder(header, openID)}
			if _, err := s.LinkWeChatIdentity(ctx, id, "user-"+openID); err != nil {
				t.Fatalf("LinkWeChatIdentity: %v", err)
			}
		}
		if err := s.SaveWeChatToken(ctx, &storage.WeChatToken{AppID: appB, Token: sealedUnder(hdrV2, "token")}); err != nil {
			t.Fatalf("SaveWeChatToken: %v", err)
		}
		want := map[storage.SealedKind][][]byte{
			storage.SealedSigningKey:  {hdrOld, hdrNew, hdrV2},
			storage.SealedAppSecret:   {hdrNew, hdrOther},
			storage.SealedSessionKey:  {hdrOld, hdrOther},
			storage.SealedWeChatToken: {hdrV2},
		}
		checkEveryKind(t, "EveryKind", want)
		checkHeaders(t, ctx, s, want)
	})

	// Many values under few secrets: each header once.
	su.runReseal(t, "DuplicatesCollapsed", func(t *testing.T, ctx context.Context, s resealStore) {
		headers := [][]byte{hdrOld, hdrNew, hdrOld, hdrOther}
		errs := parallel(4, func(w int) error {
			for i := w; i < 60; i += 4 {
				app := []string{appA, appB, appC}[i%3]
				openID := fmt.Sprintf("o-%03d", i)
				id := &storage.WeChatIdentity{AppID: app, OpenID: openID, SessionKey: sealedUnder(headers[i%len(headers)], openID)}
				if _, err := s.LinkWeChatIdentity(ctx, id, "user-"+app+openID); err != nil {
					return err
				}
			}
			return nil
		})
		for _, err := range errs {
			if err != nil {
				t.Fatalf("LinkWeChatIdentity: %v", err)
			}
		}
		for _, app := range []string{appA, appB, appC} {
			if err := s.SaveWeChatToken(ctx, &storage.WeChatToken{AppID: app, Token: sealedUnder(hdrNew, app)}); err != nil {
				t.Fatalf("SaveWeChatToken: %v", err)
			}
		}
		checkHeaders(t, ctx, s, map[storage.SealedKind][][]byte{
			storage.SealedSessionKey:  {hdrOld, hdrNew, hdrOther},
			storage.SealedWeChatToken: {hdrNew},
		})
	})

	// A value shorter than a header is corrupt; it is reported whole, for
	// the caller to refuse, and is not merged with a longer value it
	// starts. A value of exactly a header's length is its own header.
	su.runReseal(t, "ShortValue", func(t *testing.T, ctx context.Context, s resealStore) {
		for openID, key := range map[string][]byte{
			"o-short": hdrOld[:3],
			"o-full":  sealedUnder(hdrOld, "o-full"),
			"o-exact": bytes.Clone(hdrNew),
		} {
			id := &storage.WeChatIdentity{AppID: appA, OpenID: openID, SessionKey: key}
			if _, err := s.LinkWeChatIdentity(ctx, id, "user-"+openID); err != nil {
				t.Fatalf("LinkWeChatIdentity: %v", err)
			}
		}
		key := newKey("k-active", storage.KeyActive, keyBase)
		key.PrivateKey = []byte{1}
		if err := s.CreateSigningKey(ctx, key); err != nil {
			t.Fatalf("CreateSigningKey: %v", err)
		}
		checkHeaders(t, ctx, s, map[storage.SealedKind][][]byte{
			storage.SealedSigningKey: {{1}},
			storage.SealedSessionKey: {hdrOld[:3], hdrOld, hdrNew},
		})
	})

	// What start-up checks after `wxidp secrets reencrypt`: once every value
	// is resealed, or rewritten by a login, or deleted, the old secret's
	// header is gone.
	su.runReseal(t, "FollowsRewrites", func(t *testing.T, ctx context.Context, s resealStore) {
		for _, id := range []string{"c1", "c2"} {
			c := newClient(id)
			c.WeChatAppSecret = sealedUnder(hdrOld, id)
			if err := s.CreateClient(ctx, c); err != nil {
				t.Fatalf("CreateClient(%s): %v", id, err)
			}
		}
		for _, openID := range []string{"o-1", "o-2"} {
			id := &storage.WeChatIdentity{AppID: appA, OpenID: openID, SessionKey: sealedUnder(hdrOld, openID)}
			if _, err := s.LinkWeChatIdentity(ctx, id, "user-"+openID); err != nil {
				t.Fatalf("LinkWeChatIdentity: %v", err)
			}
		}
		checkHeaders(t, ctx, s, map[storage.SealedKind][][]byte{
			storage.SealedAppSecret:  {hdrOld},
			storage.SealedSessionKey: {hdrOld},
		})

		// o-1 logs in again under the new secret; c2 is deleted.
		id := &storage.WeChatIdentity{AppID: appA, OpenID: "o-1", SessionKey: sealedUnder(hdrNew, "o-1")}
		if _, err := s.LinkWeChatIdentity(ctx, id, "user-o-1"); err != nil {
			t.Fatalf("LinkWeChatIdentity: %v", err)
		}
		if err := s.DeleteClient(ctx, "c2"); err != nil {
			t.Fatalf("DeleteClient: %v", err)
		}
		checkHeaders(t, ctx, s, map[storage.SealedKind][][]byte{
			storage.SealedAppSecret:  {hdrOld},
			storage.SealedSessionKey: {hdrOld, hdrNew},
		})

		// Re-encryption moves the rest to the new secret.
		mustReseal(t, ctx, s, func(sv storage.Sealed) ([]byte, error) {
			if bytes.HasPrefix(sv.Value, hdrNew) {
				return sv.Value, nil
			}
			return append(bytes.Clone(hdrNew), sv.Value[storage.SealedHeaderLen:]...), nil
		}, 2)
		checkHeaders(t, ctx, s, map[storage.SealedKind][][]byte{
			storage.SealedAppSecret:  {hdrNew},
			storage.SealedSessionKey: {hdrNew},
		})
	})

	// Inside a transaction SealedHeaders sees the transaction's writes, and
	// after Rollback no longer does.
	su.runReseal(t, "InTransaction", func(t *testing.T, ctx context.Context, s resealStore) {
		mustLink(t, ctx, s, login{appA, "o-1", "", "user-1"})
		committed := []byte("seale") // mustLink's session key is "sealed-key-user-1"
		txCtx := mustBegin(t, ctx, s)
		id := &storage.WeChatIdentity{AppID: appA, OpenID: "o-2", SessionKey: sealedUnder(hdrNew, "o-2")}
		if _, err := s.LinkWeChatIdentity(txCtx, id, "user-2"); err != nil {
			_ = s.Rollback(txCtx)
			t.Fatalf("LinkWeChatIdentity in tx: %v", err)
		}
		checkHeaders(t, txCtx, s, map[storage.SealedKind][][]byte{storage.SealedSessionKey: {committed, hdrNew}})
		if err := s.Rollback(txCtx); err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		checkHeaders(t, ctx, s, map[storage.SealedKind][][]byte{storage.SealedSessionKey: {committed}})
	})
}
