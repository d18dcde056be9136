package keys

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var (
	secretA = strings.Repeat("a", 32)
	secretB = strings.Repeat("b", 40)
)

func TestCipherRoundTripAndRotation(t *testing.T) {
	t.Parallel()
	old, err := NewCipher([]string{secretA})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := old.Seal([]byte("private key"), []byte("kid-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("private key")) {
		t.Fatal("ciphertext contains the plaintext")
	}
	rotated, err := NewCipher([]string{secretB, secretA})
	if err != nil {
		t.Fatal(err)
	}
	got, err := rotated.Open(sealed, []byte("kid-1"))
	if err != nil || string(got) != "private key" {
		t.Fatalf("rotated cipher cannot open old ciphertext: %q, %v", got, err)
	}
	if rotated.Current(sealed) {
		t.Error("ciphertext sealed under the old secret reported current")
	}
	resealed, err := rotated.Seal(got, []byte("kid-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !rotated.Current(resealed) {
		t.Error("fresh ciphertext not reported current")
	}
	newOnly, _ := NewCipher([]string{secretB})
	if _, err := newOnly.Open(resealed, []byte("kid-1")); err != nil {
		t.Errorf("after re-encryption the old secret should be unnecessary: %v", err)
	}
	if _, err := newOnly.Open(sealed, []byte("kid-1")); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("without the sealing secret: got %v, want ErrUndecryptable", err)
	}
}

func TestCipherRejectsTamperingAndMisplacement(t *testing.T) {
	t.Parallel()
	c, _ := NewCipher([]string{secretA})
	sealed, _ := c.Seal([]byte("secret"), []byte("place-1"))
	cases := map[string]struct {
		data []byte
		aad  string
	}{
		"other place":  {sealed, "place-2"},
		"flipped byte": {flip(sealed, len(sealed)-1), "place-1"},
		"flipped key":  {flip(sealed, 2), "place-1"},
		"truncated":    {sealed[:8], "place-1"},
		"empty":        {nil, "place-1"},
		"bad version":  {flip(sealed, 0), "place-1"},
	}
	for name, tc := range cases {
		if _, err := c.Open(tc.data, []byte(tc.aad)); !errors.Is(err, ErrUndecryptable) {
			t.Errorf("%s: got %v, want ErrUndecryptable", name, err)
		}
	}
}

func TestNewCipherValidatesSecrets(t *testing.T) {
	t.Parallel()
	if _, err := NewCipher(nil); !errors.Is(err, ErrNoSecrets) {
		t.Errorf("no secrets: %v", err)
	}
	_, err := NewCipher([]string{secretA, "short-secret"})
	if !errors.Is(err, ErrSecretTooShort) {
		t.Fatalf("short secret: %v", err)
	}
	if strings.Contains(err.Error(), "short-secret") {
		t.Error("error message leaks the secret")
	}
	if !strings.Contains(err.Error(), "#2") {
		t.Errorf("error should name the position: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0xff
	return out
}

func TestRecognizesHeaders(t *testing.T) {
	t.Parallel()
	old, _ := NewCipher([]string{secretA})
	sealed, _ := old.Seal([]byte("x"), nil)
	header := sealed[:headerLen]
	both, _ := NewCipher([]string{secretB, secretA})
	onlyNew, _ := NewCipher([]string{secretB})
	if !old.Recognizes(header) || !both.Recognizes(header) {
		t.Error("a configured secret's header not recognized")
	}
	if onlyNew.Recognizes(header) {
		t.Error("a header of a dropped secret recognized")
	}
	if onlyNew.Recognizes([]byte{1, 2}) || Fingerprint([]byte{1}) != "corrupt" {
		t.Error("short headers must be unrecognized and reported as corrupt")
	}
	if fp := Fingerprint(header); len(fp) != 8 || strings.Contains(fp, secretA[:4]) {
		t.Errorf("fingerprint %q", fp)
	}
}
