package clientreg

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
	secret, err := GenerateSecret()
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

// TestSecretHasherKnows: start-up asks which stored hashes the configured
// secrets can still verify.
func TestSecretHasherKnows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	oldSecret, newSecret := strings.Repeat("o", 32), strings.Repeat("n", 32)
	old, _ := NewSecretHasher([]string{oldSecret})
	oldHash, _ := old.Hash(ctx, []byte("client-secret"))
	rotated, _ := NewSecretHasher([]string{newSecret, oldSecret})
	newHash, _ := rotated.Hash(ctx, []byte("client-secret"))
	dropped, _ := NewSecretHasher([]string{newSecret})
	for _, tc := range []struct {
		name   string
		hasher *SecretHasher
		hash   string
		want   bool
	}{
		{"own hash", old, string(oldHash), true},
		{"old hash while the old secret is listed", rotated, string(oldHash), true},
		{"new hash", rotated, string(newHash), true},
		{"old hash after the old secret is dropped", dropped, string(oldHash), false},
		{"new hash before the new secret is listed", old, string(newHash), false},
		{"empty", rotated, "", false},
		{"other scheme", rotated, "bcrypt$a$b", false},
		{"bad mac", rotated, string(newHash) + "!", false},
	} {
		if got := tc.hasher.Knows([]byte(tc.hash)); got != tc.want {
			t.Errorf("%s: Knows = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func BenchmarkSecretCompare(b *testing.B) {
	h, _ := NewSecretHasher([]string{strings.Repeat("o", 32)})
	secret, _ := GenerateSecret()
	hash, _ := h.Hash(context.Background(), []byte(secret))
	for b.Loop() {
		if err := h.Compare(context.Background(), hash, []byte(secret)); err != nil {
			b.Fatal(err)
		}
	}
}
