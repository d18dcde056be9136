package clientreg

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage/memory"
)

func TestValidateRedirectURI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		uri string
		ok  bool
	}{
		// Accepted.
		{"https://example.com/cb", true},
		{"https://example.com", true},
		{"https://example.com:8443/cb?app=1", true},
		{"https://sub.example.co.uk/a/b/c", true},
		{"https://localhost/cb", true},
		{"https://203.0.113.7/cb", true},
		{"https://[2001:db8::1]/cb", true},
		{"http://127.0.0.1/cb", true},
		{"http://127.0.0.1:8080/cb", true},
		{"http://127.0.0.2/cb", true},
		{"http://127.255.255.254:1/", true},
		{"http://[::1]/cb", true},
		{"http://[::1]:8080/cb", true},
		{"http://localhost/cb", true},
		{"http://localhost:3000/callback", true},
		{"com.example.app:/callback", true},
		{"com.example.app:/", true},
		{"cn.example.mini-app:/oauth2/cb?x=1", true},

		// The three that prefix matching let through.
		{"http://localhost.evil.com/cb", false},
		{"http://localhost@evil.com/", false},
		{"https://", false},
		// More look-alikes of loopback.
		{"http://127.0.0.1.evil.com/cb", false},
		{"http://127.0.0.1@evil.com/cb", false},
		{"http://localhost:80@evil.com/cb", false},
		{"http://localhost%2eevil.com/cb", false},
		{"http://127.1/cb", false},
		{"http://2130706433/cb", false},
		{"http://0x7f.0.0.1/cb", false},
		{"http://[::ffff:127.0.0.1]/cb", false},
		{"http://[fe80::1%25lo]/cb", false},
		{"http://::1/cb", false},
		{"http://0.0.0.0/cb", false},
		{"http://10.0.0.1/cb", false},
		{"http://[::2]/cb", false},
		{"http://example.com/cb", false},
		{"http://localhost./cb", false},
		{"http:/localhost/cb", false},
		{"http:localhost/cb", false},
		// Case: one spelling only, since matching is exact.
		{"HTTPS://example.com/cb", false},
		{"Https://example.com/cb", false},
		{"https://EXAMPLE.com/cb", false},
		{"HTTP://127.0.0.1/cb", false},
		{"Com.Example.App:/cb", false},
		// Ports.
		{"https://example.com:/cb", false},
		{"https://example.com:0/cb", false},
		{"https://example.com:65536/cb", false},
		{"https://example.com:080/cb", false},
		{"https://example.com:http/cb", false},
		{"http://127.0.0.1:-1/cb", false},
		// Fragment and user-info.
		{"https://example.com/cb#frag", false},
		{"https://example.com/cb#", false},
		{"https://user:pw@example.com/", false},
		{"https://user@example.com/", false},
		{"https://@example.com/", false},
		// Not absolute, not a URI, empty, whitespace.
		{"", false},
		{" ", false},
		{"/cb", false},
		{"cb", false},
		{"//example.com/cb", false},
		{" https://example.com/cb", false},
		{"https://example.com/cb ", false},
		{"https://example.com/c b", false},
		{"https://example.com/cb\n", false},
		{"https://example.com/cb\t", false},
		{"https://exa\x00mple.com/cb", false},
		{"https://exämple.com/cb", false},
		{`https://example.com\@evil.com/cb`, false},
		{"https:///cb", false},
		{"https:/example.com/cb", false},
		{"https://ex%61mple.com/cb", false},
		{"https://example..com/cb", false},
		{"https://-example.com/cb", false},
		{"https://example.com./cb", false},
		{"https://256.1.1.1/cb", false},
		{"https://0x7f000001/cb", false},
		{"https://1.0x7f/cb", false},
		{"https://example.0xab/cb", false},
		{"https://0xab.example.com/cb", true},
		{"https://exa_mple.com/cb", false},
		{"https://" + strings.Repeat("a", 2048) + ".com/", false},
		// Dangerous or unsupported schemes.
		{"javascript:alert(1)", false},
		{"javascript://example.com/%0aalert(1)", false},
		{"data:text/html,<script>alert(1)</script>", false},
		{"file:///etc/passwd", false},
		{"vbscript:msgbox", false},
		{"ftp://example.com/cb", false},
		{"myapp:/callback", false},
		{"myapp://callback", false},
		{"com.example.app://callback", false},
		{"com.example.app:callback", false},
		{"com.example.app:", false},
		{"com..app:/cb", false},
		{".com.example:/cb", false},
		{"com.example.:/cb", false},
		{"com.example.app:/cb#frag", false},
	} {
		err := ValidateRedirectURI(tc.uri)
		if tc.ok && err != nil {
			t.Errorf("%q refused: %v", tc.uri, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalidRedirectURI) {
			t.Errorf("%q: got %v, want ErrInvalidRedirectURI", tc.uri, err)
		}
	}
}

// TestClientsRedirectURIs: registration and update refuse bad redirect URIs
// without writing anything, and keep good ones byte for byte.
func TestClientsRedirectURIs(t *testing.T) {
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

	good := []string{"https://app.example.com/cb?x=1", "http://[::1]:8080/cb", "com.example.app:/callback"}
	c, _, err := cs.Create(ctx, Metadata{ClientID: "good", RedirectURIs: good})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.RedirectURIs, " ") != strings.Join(good, " ") {
		t.Fatalf("stored %q, want %q exactly", c.RedirectURIs, good)
	}

	for _, uri := range []string{"http://localhost.evil.com/cb", "http://localhost@evil.com/", "https://"} {
		_, _, err := cs.Create(ctx, Metadata{ClientID: "evil", RedirectURIs: []string{good[0], uri}})
		if !errors.Is(err, ErrInvalidRedirectURI) {
			t.Errorf("create with %q: %v", uri, err)
		}
		if _, err := cs.Update(ctx, "good", Metadata{RedirectURIs: []string{uri}}, time.Time{}); !errors.Is(err, ErrInvalidRedirectURI) {
			t.Errorf("update with %q: %v", uri, err)
		}
	}
	list, err := cs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || strings.Join(list[0].RedirectURIs, " ") != strings.Join(good, " ") {
		t.Fatalf("refused registrations changed the store: %+v", list)
	}
}
