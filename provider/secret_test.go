package provider

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wxidp/wxidp/keys"
)

func TestSecretHasher(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	oldSecret, newSecret := strings.Repeat("o", 32), strings.Repeat("n", 32)
	h, err := NewSecretHasher([]string{oldSecret})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := GenerateClientSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) < 43 { // 32 bytes, base64url
		t.Fatalf("secret %d characters, want 256 bits", len(secret))
	}
	hash, err := h.Hash(ctx, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(hash), secret) {
		t.Fatal("hash contains the secret")
	}
	if err := h.Compare(ctx, hash, []byte(secret)); err != nil {
		t.Fatalf("right secret rejected: %v", err)
	}
	for name, try := range map[string]string{"wrong": secret + "x", "empty": "", "prefix": secret[:10]} {
		if err := h.Compare(ctx, hash, []byte(try)); err == nil {
			t.Errorf("%s secret accepted", name)
		}
	}
	for _, bad := range []string{"", "plain", "hmac-sha256$x$!!", "bcrypt$a$b"} {
		if err := h.Compare(ctx, []byte(bad), []byte(secret)); err == nil {
			t.Errorf("malformed hash %q accepted", bad)
		}
	}
	// After WXIDP_SECRETS rotates, hashes made under the old secret still
	// verify while it stays in the list; new hashes use the new one.
	rotated, _ := NewSecretHasher([]string{newSecret, oldSecret})
	if err := rotated.Compare(ctx, hash, []byte(secret)); err != nil {
		t.Fatalf("rotation broke an existing hash: %v", err)
	}
	newHash, _ := rotated.Hash(ctx, []byte(secret))
	if string(newHash) == string(hash) {
		t.Fatal("new hashes should use the first secret")
	}
	if _, err := NewSecretHasher([]string{"short"}); !errors.Is(err, keys.ErrSecretTooShort) {
		t.Fatalf("short system secret: %v", err)
	}
}

func BenchmarkSecretCompare(b *testing.B) {
	h, _ := NewSecretHasher([]string{strings.Repeat("o", 32)})
	secret, _ := GenerateClientSecret()
	hash, _ := h.Hash(context.Background(), []byte(secret))
	for b.Loop() {
		if err := h.Compare(context.Background(), hash, []byte(secret)); err != nil {
			b.Fatal(err)
		}
	}
}
