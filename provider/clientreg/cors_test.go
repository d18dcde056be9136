package clientreg

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage/memory"
)

func TestValidateCORSOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		// Accepted: exactly what browsers put in the Origin header.
		{"https://app.example.com", true},
		{"https://app.example.com:8443", true},
		{"https://203.0.113.7", true},
		{"https://[2001:db8::1]:8443", true},
		{"https://xn--fiqs8s.example", true},
		{"http://localhost:3000", true},
		{"http://localhost", true},
		{"http://127.0.0.1:5173", true},
		{"http://[::1]:8080", true},

		// Never sent by a browser, so they could never match.
		{"https://app.example.com/", false},
		{"https://app.example.com/cb", false},
		{"https://app.example.com?", false},
		{"https://app.example.com?x=1", false},
		{"https://app.example.com#", false},
		{"https://APP.example.com", false},
		{"HTTPS://app.example.com", false},
		{"https://app.example.com:443", false},
		{"http://localhost:80", false},
		{"https://app.example.com:", false},
		{"https://app.example.com:0443", false},
		{"https://user@app.example.com", false},
		{"https://app.example.com.", false},
		{"https://ex%61mple.com", false},
		{"null", false},
		{"*", false},
		{"", false},
		{"app.example.com", false},
		{"//app.example.com", false},
		{" https://app.example.com", false},
		{"https://app.example.com\n", false},
		// http only to loopback, as for redirect URIs.
		{"http://app.example.com", false},
		{"http://localhost.evil.com", false},
		{"http://10.0.0.1", false},
		{"http://127.1", false},
		{"ftp://app.example.com", false},
		{"com.example.app:/", false},
		{"https://" + strings.Repeat("a", 300) + ".com", false},
	} {
		err := ValidateCORSOrigin(tc.origin)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateCORSOrigin(%q) = %v, want ok=%v", tc.origin, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidMetadata) {
			t.Errorf("ValidateCORSOrigin(%q) = %v, want ErrInvalidMetadata", tc.origin, err)
		}
	}
}

// TestClientsCORSOrigins: registration and update refuse a bad origin
// without writing anything, and keep good ones byte for byte.
func TestClientsCORSOrigins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hasher, err := NewSecretHasher([]string{strings.Repeat("h", 32)})
	if err != nil {
		t.Fatal(err)
	}
	cipher, err := keys.NewCipher([]string{strings.Repeat("k", 32)})
	if err != nil {
		t.Fatal(err)
	}
	store := memory.New()
	cs := NewRegistry(store, hasher, cipher)

	good := []string{"https://app.example.com", "http://localhost:3000"}
	c, _, err := cs.Create(ctx, Metadata{ClientID: "spa", AllowedCORSOrigins: append(good, good[0])})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.AllowedCORSOrigins, good) {
		t.Fatalf("stored %q, want %q (deduplicated, in order)", c.AllowedCORSOrigins, good)
	}
	for _, origin := range []string{"https://app.example.com/", "http://evil.example", "null"} {
		_, _, err := cs.Create(ctx, Metadata{ClientID: "evil", AllowedCORSOrigins: []string{good[0], origin}})
		if !errors.Is(err, ErrInvalidMetadata) || !strings.Contains(err.Error(), "allowed_cors_origins") {
			t.Errorf("create with %q: %v, want invalid allowed_cors_origins", origin, err)
		}
		if _, err := cs.Update(ctx, "spa", Metadata{AllowedCORSOrigins: []string{origin}}, time.Time{}); !errors.Is(err, ErrInvalidMetadata) {
			t.Errorf("update with %q: %v", origin, err)
		}
	}
	many := make([]string, maxCORSOrigins+1)
	for i := range many {
		many[i] = "https://app" + strings.Repeat("x", i) + ".example.com"
	}
	if _, _, err := cs.Create(ctx, Metadata{ClientID: "many", AllowedCORSOrigins: many}); !errors.Is(err, ErrInvalidMetadata) {
		t.Errorf("create with %d origins: %v", len(many), err)
	}
	list, err := cs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !slices.Equal(list[0].AllowedCORSOrigins, good) {
		t.Fatalf("refused registrations changed the store: %+v", list)
	}
	if ok, err := store.CORSOriginAllowed(ctx, good[1], "spa"); err != nil || !ok {
		t.Fatalf("CORSOriginAllowed(%q, spa) = %v, %v", good[1], ok, err)
	}
}
