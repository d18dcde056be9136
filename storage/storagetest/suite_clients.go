package storagetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

func testClients(t *testing.T, su suite) {
	roundTrips := []struct {
		name   string
		client func() *storage.Client
	}{
		{"Confidential", func() *storage.Client { return newClient("conf") }},
		{"PublicMiniProgram", func() *storage.Client {
			c := newClient("mp")
			c.SecretHash = nil
			c.TokenEndpointAuthMethod = "none"
			c.GrantTypes = []string{"urn:wxidp:wechat-code"}
			return c
		}},
		{"CORSOrigins", func() *storage.Client {
			c := newClient("spa")
			c.AllowedCORSOrigins = []string{"https://spa.example.com", "http://localhost:3000"}
			return c
		}},
		{"ScanToLogin", func() *storage.Client {
			c := newClient("web")
			c.PostLogoutRedirectURIs = []string{"https://web.example.com/logged-out", "http://127.0.0.1:8080/bye"}
			c.WeChatLoginPage = "pages/login/scan_index"
			return c
		}},
		{"Lifetimes", func() *storage.Client {
			c := newClient("short")
			c.AccessTokenTTL, c.RefreshTokenTTL, c.SessionMaxAge = time.Minute, 2*time.Hour, 24*time.Hour
			return c
		}},
		{"Minimal", func() *storage.Client {
			return &storage.Client{ID: "min", TokenEndpointAuthMethod: "client_secret_post"}
		}},
	}
	for _, tc := range roundTrips {
		su.run(t, "RoundTrip/"+tc.name, func(t *testing.T, ctx context.Context, s storage.Store) {
			want := tc.client()
			before := time.Now()
			if err := s.CreateClient(ctx, tc.client()); err != nil {
				t.Fatalf("CreateClient: %v", err)
			}
			after := time.Now()
			got, err := s.LookupClient(ctx, want.ID)
			if err != nil {
				t.Fatalf("LookupClient: %v", err)
			}
			checkClient(t, got, want)
			checkRecent(t, "CreatedAt", got.CreatedAt, before, after)
			checkRecent(t, "UpdatedAt", got.UpdatedAt, before, after)
			// Callers test "no secret registered" with == nil.
			if want.WeChatAppSecret == nil && got.WeChatAppSecret != nil {
				t.Errorf("WeChatAppSecret = %v, want nil", got.WeChatAppSecret)
			}
		})
	}

	su.run(t, "CreateKeepsGivenTimestamps", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := newClient("a")
		c.CreatedAt = usec(time.Now().Add(-48 * time.Hour))
		c.UpdatedAt = usec(time.Now().Add(-24 * time.Hour))
		want := *c
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatalf("CreateClient: %v", err)
		}
		got, err := s.LookupClient(ctx, "a")
		if err != nil {
			t.Fatalf("LookupClient: %v", err)
		}
		if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
			t.Errorf("CreatedAt, UpdatedAt = %v, %v; want %v, %v", got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt)
		}
	})

	su.run(t, "DuplicateID", func(t *testing.T, ctx context.Context, s storage.Store) {
		mustCreateClient(t, ctx, s, "a")
		dup := newClient("a")
		dup.Name = "impostor"
		if err := s.CreateClient(ctx, dup); !errors.Is(err, storage.ErrAlreadyExists) {
			t.Fatalf("CreateClient of a taken ID: %v, want ErrAlreadyExists", err)
		}
		got, err := s.LookupClient(ctx, "a")
		if err != nil {
			t.Fatalf("LookupClient: %v", err)
		}
		if got.Name != newClient("a").Name {
			t.Errorf("Name = %q: the failed create overwrote the client", got.Name)
		}
	})

	su.run(t, "ListOrderedByID", func(t *testing.T, ctx context.Context, s storage.Store) {
		list, err := s.ListClients(ctx)
		if err != nil || len(list) != 0 {
			t.Fatalf("ListClients of an empty store = %v, %v; want none, nil", list, err)
		}
		for _, id := range []string{"charlie", "alpha", "delta", "bravo"} {
			mustCreateClient(t, ctx, s, id)
		}
		list, err = s.ListClients(ctx)
		if err != nil {
			t.Fatalf("ListClients: %v", err)
		}
		var ids []string
		for _, c := range list {
			ids = append(ids, c.ID)
		}
		if want := []string{"alpha", "bravo", "charlie", "delta"}; !sameStrings(ids, want) {
			t.Fatalf("ListClients IDs = %q, want %q", ids, want)
		}
		checkClient(t, &list[0], newClient("alpha"))
	})

	su.run(t, "Update", func(t *testing.T, ctx context.Context, s storage.Store) {
		mustCreateClient(t, ctx, s, "a")
		created, err := s.LookupClient(ctx, "a")
		if err != nil {
			t.Fatalf("LookupClient: %v", err)
		}
		want := &storage.Client{
			ID:                      "a",
			SecretHash:              []byte("rotated"),
			Name:                    "Renamed",
			GrantTypes:              []string{"client_credentials"},
			Scopes:                  []string{"api"},
			Audience:                []string{"https://a.example", "https://b.example"},
			RedirectURIs:            nil,
			AllowedCORSOrigins:      []string{"https://spa.example.com"},
			PostLogoutRedirectURIs:  []string{"https://a.example/after-logout"},
			TokenEndpointAuthMethod: "client_secret_post",
			WeChatAppID:             "wxnew",
			WeChatLoginPage:         "pages/other/index",
			WeChatAppSecret:         []byte("new-ciphertext"),
		}
		upd := *want
		// The store owns both timestamps on update; these must be ignored.
		upd.CreatedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
		upd.UpdatedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
		before := time.Now()
		if err := s.UpdateClient(ctx, &upd, time.Time{}); err != nil {
			t.Fatalf("UpdateClient: %v", err)
		}
		after := time.Now()
		got, err := s.LookupClient(ctx, "a")
		if err != nil {
			t.Fatalf("LookupClient: %v", err)
		}
		checkClient(t, got, want)
		if !got.CreatedAt.Equal(created.CreatedAt) {
			t.Errorf("CreatedAt = %v, want unchanged %v", got.CreatedAt, created.CreatedAt)
		}
		checkRecent(t, "UpdatedAt", got.UpdatedAt, before, after)
		if got.UpdatedAt.Before(created.UpdatedAt) {
			t.Errorf("UpdatedAt = %v went back from %v", got.UpdatedAt, created.UpdatedAt)
		}
	})

	// Two read-modify-writes from the same read: the second must be refused
	// instead of silently reverting the first (the admin API's If-Match).
	su.run(t, "UpdateIfUnchanged", func(t *testing.T, ctx context.Context, s storage.Store) {
		mustCreateClient(t, ctx, s, "a")
		read, err := s.LookupClient(ctx, "a")
		if err != nil {
			t.Fatalf("LookupClient: %v", err)
		}
		first := *read
		first.Name = "First"
		if err := s.UpdateClient(ctx, &first, read.UpdatedAt); err != nil {
			t.Fatalf("UpdateClient with the current UpdatedAt: %v", err)
		}
		// Back-to-back updates may fall in one clock tick; UpdatedAt must
		// still move, or the stale write below would pass.
		if !first.UpdatedAt.After(read.UpdatedAt) {
			t.Errorf("UpdatedAt = %v, want after %v", first.UpdatedAt, read.UpdatedAt)
		}
		stale := *read
		stale.Name = "Stale"
		if err := s.UpdateClient(ctx, &stale, read.UpdatedAt); !errors.Is(err, storage.ErrStale) {
			t.Fatalf("UpdateClient with a stale UpdatedAt: %v, want ErrStale", err)
		}
		got, err := s.LookupClient(ctx, "a")
		if err != nil {
			t.Fatalf("LookupClient: %v", err)
		}
		if got.Name != "First" || !got.UpdatedAt.Equal(first.UpdatedAt) {
			t.Errorf("after the refused update: name %q updated %v; want %q %v",
				got.Name, got.UpdatedAt, "First", first.UpdatedAt)
		}
		if err := s.UpdateClient(ctx, newClient("nope"), read.UpdatedAt); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("conditional UpdateClient of an unknown client: %v, want ErrNotFound", err)
		}
	})

	su.run(t, "Delete", func(t *testing.T, ctx context.Context, s storage.Store) {
		mustCreateClient(t, ctx, s, "a")
		mustCreateClient(t, ctx, s, "b")
		if err := s.DeleteClient(ctx, "a"); err != nil {
			t.Fatalf("DeleteClient: %v", err)
		}
		if _, err := s.LookupClient(ctx, "a"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("LookupClient of a deleted client: %v, want ErrNotFound", err)
		}
		if _, err := s.GetClient(ctx, "a"); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("GetClient of a deleted client: %v, want fosite.ErrNotFound", err)
		}
		list, err := s.ListClients(ctx)
		if err != nil || len(list) != 1 || list[0].ID != "b" {
			t.Errorf("ListClients = %v, %v; want only b", list, err)
		}
	})

	unknown := []struct {
		name string
		call func(ctx context.Context, s storage.Store) error
	}{
		{"Lookup", func(ctx context.Context, s storage.Store) error {
			_, err := s.LookupClient(ctx, "nope")
			return err
		}},
		{"Update", func(ctx context.Context, s storage.Store) error {
			return s.UpdateClient(ctx, newClient("nope"), time.Time{})
		}},
		{"Delete", func(ctx context.Context, s storage.Store) error {
			return s.DeleteClient(ctx, "nope")
		}},
	}
	for _, tc := range unknown {
		su.run(t, "Unknown/"+tc.name, func(t *testing.T, ctx context.Context, s storage.Store) {
			mustCreateClient(t, ctx, s, "other")
			if err := tc.call(ctx, s); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("%s of an unknown client: %v, want ErrNotFound", tc.name, err)
			}
			if _, err := s.LookupClient(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("%s of an unknown client created it: LookupClient: %v", tc.name, err)
			}
		})
	}

	// The memory backend is the one at risk here: handing out its own slices
	// would let a caller edit a registration without UpdateClient.
	su.run(t, "NoSharedMemory", func(t *testing.T, ctx context.Context, s storage.Store) {
		c := newClient("a")
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatalf("CreateClient: %v", err)
		}
		c.RedirectURIs[0] = "https://evil.example/cb"
		c.PostLogoutRedirectURIs[0] = "https://evil.example/bye"
		c.WeChatAppSecret[0] = 42
		got, err := s.LookupClient(ctx, "a")
		if err != nil {
			t.Fatalf("LookupClient: %v", err)
		}
		got.Scopes[0] = "admin"
		got.PostLogoutRedirectURIs[1] = "https://evil.example/"
		got.SecretHash[0] = 'X'
		fc, err := s.GetClient(ctx, "a")
		if err != nil {
			t.Fatalf("GetClient: %v", err)
		}
		fc.(*storage.OAuthClient).Record.GrantTypes[0] = "password"
		again, err := s.LookupClient(ctx, "a")
		if err != nil {
			t.Fatalf("LookupClient: %v", err)
		}
		checkClient(t, again, newClient("a"))
	})

	su.run(t, "CORSOriginAllowed", func(t *testing.T, ctx context.Context, s storage.Store) {
		a := newClient("a")
		a.AllowedCORSOrigins = []string{"https://app.example.com", "http://localhost:3000"}
		b := newClient("b")
		b.AllowedCORSOrigins = []string{"https://b.example"}
		for _, c := range []*storage.Client{a, b, newClient("none")} {
			if err := s.CreateClient(ctx, c); err != nil {
				t.Fatalf("CreateClient(%q): %v", c.ID, err)
			}
		}
		// The caller's slice is not the store's.
		a.AllowedCORSOrigins[0] = "https://evil.example"
		check := func(when, origin, clientID string, want bool) {
			t.Helper()
			got, err := s.CORSOriginAllowed(ctx, origin, clientID)
			if err != nil || got != want {
				t.Errorf("%s: CORSOriginAllowed(%q, %q) = %v, %v; want %v", when, origin, clientID, got, err, want)
			}
		}
		for _, tc := range []struct {
			origin, clientID string
			want             bool
		}{
			{"https://app.example.com", "a", true},
			{"http://localhost:3000", "a", true},
			{"https://app.example.com", "", true}, // a preflight: any client
			{"https://b.example", "", true},
			{"https://app.example.com", "b", false}, // another client's origin
			{"https://b.example", "a", false},
			{"https://app.example.com", "none", false},
			{"https://app.example.com", "nope", false},
			{"https://evil.example", "", false},
			// Exact matches only: no case folding, prefixes or paths.
			{"https://APP.example.com", "", false},
			{"https://app.example", "", false},
			{"https://app.example.com/", "a", false},
			{"http://localhost", "a", false},
			{"", "", false},
		} {
			check("registered", tc.origin, tc.clientID, tc.want)
		}

		a.AllowedCORSOrigins = nil
		if err := s.UpdateClient(ctx, a, time.Time{}); err != nil {
			t.Fatalf("UpdateClient: %v", err)
		}
		check("after update", "https://app.example.com", "", false)
		check("after update", "https://app.example.com", "a", false)
		if err := s.DeleteClient(ctx, "b"); err != nil {
			t.Fatalf("DeleteClient: %v", err)
		}
		check("after delete", "https://b.example", "", false)
	})

	su.run(t, "GetClient", func(t *testing.T, ctx context.Context, s storage.Store) {
		want := mustCreateClient(t, ctx, s, "a")
		fc, err := s.GetClient(ctx, "a")
		if err != nil {
			t.Fatalf("GetClient: %v", err)
		}
		oc, ok := fc.(*storage.OAuthClient)
		if !ok {
			t.Fatalf("GetClient returned %T, want *storage.OAuthClient", fc)
		}
		if oc.Record == nil {
			t.Fatal("OAuthClient.Record is nil")
		}
		checkClient(t, oc.Record, want)
		if oc.GetID() != want.ID || !bytes.Equal(oc.GetHashedSecret(), want.SecretHash) ||
			!sameStrings(oc.GetRedirectURIs(), want.RedirectURIs) || !sameStrings(oc.GetGrantTypes(), want.GrantTypes) ||
			!sameStrings(oc.GetScopes(), want.Scopes) || !sameStrings(oc.GetAudience(), want.Audience) ||
			oc.GetTokenEndpointAuthMethod() != want.TokenEndpointAuthMethod || oc.IsPublic() {
			t.Errorf("fosite view of the client does not match the record: %+v", oc.DefaultClient)
		}
		// The authorization endpoint serves "code" to clients registered for
		// the authorization_code grant, and nothing to the others.
		if got := oc.GetResponseTypes(); !sameStrings(got, []string{"code"}) {
			t.Errorf("response types of an authorization_code client = %q, want [code]", got)
		}
		cc := newClient("svc")
		cc.GrantTypes = []string{"client_credentials", "refresh_token"}
		if err := s.CreateClient(ctx, cc); err != nil {
			t.Fatalf("CreateClient: %v", err)
		}
		if fc, err := s.GetClient(ctx, "svc"); err != nil || len(fc.GetResponseTypes()) != 0 {
			t.Errorf("response types of a client_credentials client = %v, %v; want none", fc, err)
		}
		if _, err := s.GetClient(ctx, "nope"); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("GetClient of an unknown client: %v, want fosite.ErrNotFound", err)
		}
	})
}

// checkClient compares every field but the timestamps.
func checkClient(t *testing.T, got, want *storage.Client) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.TokenEndpointAuthMethod != want.TokenEndpointAuthMethod ||
		got.WeChatAppID != want.WeChatAppID || got.WeChatLoginPage != want.WeChatLoginPage {
		t.Errorf("client scalars = {ID:%q Name:%q Auth:%q AppID:%q Page:%q}, want {ID:%q Name:%q Auth:%q AppID:%q Page:%q}",
			got.ID, got.Name, got.TokenEndpointAuthMethod, got.WeChatAppID, got.WeChatLoginPage,
			want.ID, want.Name, want.TokenEndpointAuthMethod, want.WeChatAppID, want.WeChatLoginPage)
	}
	if got.AccessTokenTTL != want.AccessTokenTTL || got.RefreshTokenTTL != want.RefreshTokenTTL || got.SessionMaxAge != want.SessionMaxAge {
		t.Errorf("lifetimes = %v/%v/%v, want %v/%v/%v", got.AccessTokenTTL, got.RefreshTokenTTL, got.SessionMaxAge,
			want.AccessTokenTTL, want.RefreshTokenTTL, want.SessionMaxAge)
	}
	if !bytes.Equal(got.SecretHash, want.SecretHash) {
		t.Errorf("SecretHash = %q, want %q", got.SecretHash, want.SecretHash)
	}
	if !bytes.Equal(got.WeChatAppSecret, want.WeChatAppSecret) {
		t.Errorf("WeChatAppSecret = %v, want %v", got.WeChatAppSecret, want.WeChatAppSecret)
	}
	for _, f := range []struct {
		name      string
		got, want []string
	}{
		{"GrantTypes", got.GrantTypes, want.GrantTypes},
		{"Scopes", got.Scopes, want.Scopes},
		{"Audience", got.Audience, want.Audience},
		{"RedirectURIs", got.RedirectURIs, want.RedirectURIs},
		{"AllowedCORSOrigins", got.AllowedCORSOrigins, want.AllowedCORSOrigins},
		{"PostLogoutRedirectURIs", got.PostLogoutRedirectURIs, want.PostLogoutRedirectURIs},
	} {
		if !sameStrings(f.got, f.want) {
			t.Errorf("%s = %q, want %q", f.name, f.got, f.want)
		}
	}
}
