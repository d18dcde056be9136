package clientreg

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/keys"
)

// MinSecretLen is the shortest operator-supplied client secret accepted.
const MinSecretLen = 32

// ErrWeakSecret rejects an operator-supplied client secret that is too short.
var ErrWeakSecret = errors.New("client_secret must be at least 32 characters")

// SecretHasher hashes client secrets with HMAC-SHA-256 under a key derived
// from each system secret. The secrets it checks are server-generated with
// 256 bits of entropy (or operator-supplied with at least 32 characters), so
// a slow password hash buys nothing but ~250 ms of CPU per token request;
// the key keeps a leaked table useless without WXIDP_SECRETS. See
// docs/client-secrets.md.
type SecretHasher struct {
	keys []hmacKey // first hashes, all compare
}

type hmacKey struct {
	id  string
	key []byte
}

const hashPrefix = "hmac-sha256"

var _ fosite.Hasher = (*SecretHasher)(nil)

// NewSecretHasher derives one HMAC key per system secret.
func NewSecretHasher(secrets []string) (*SecretHasher, error) {
	if len(secrets) == 0 {
		return nil, keys.ErrNoSecrets
	}
	h := &SecretHasher{}
	for _, s := range secrets {
		if len(s) < keys.MinSecretLen {
			return nil, keys.ErrSecretTooShort
		}
		k, err := keys.DeriveKey(s, "wxidp/client-secret/hmac-sha256/v1")
		if err != nil {
			return nil, err
		}
		id := sha256.Sum256(k)
		h.keys = append(h.keys, hmacKey{id: base64.RawURLEncoding.EncodeToString(id[:6]), key: k})
	}
	return h, nil
}

// Hash returns "hmac-sha256$<key id>$<mac>"; the key id lets Compare find
// the secret that hashed it after WXIDP_SECRETS rotates.
func (h *SecretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	k := h.keys[0]
	return []byte(hashPrefix + "$" + k.id + "$" + base64.RawURLEncoding.EncodeToString(mac(k.key, data))), nil
}

// Compare checks data against hash in constant time.
func (h *SecretHasher) Compare(_ context.Context, hash, data []byte) error {
	k, want, ok := h.parse(hash)
	if !ok || !hmac.Equal(mac(k.key, data), want) {
		return fosite.ErrInvalidClient
	}
	return nil
}

// Knows reports whether hash was made under one of the configured system
// secrets, so start-up can refuse a WXIDP_SECRETS that would leave a client
// unable to authenticate. A malformed hash is not known.
func (h *SecretHasher) Knows(hash []byte) bool {
	_, _, ok := h.parse(hash)
	return ok
}

// parse splits "hmac-sha256$<key id>$<mac>" and finds the key it names.
func (h *SecretHasher) parse(hash []byte) (hmacKey, []byte, bool) {
	parts := strings.Split(string(hash), "$")
	if len(parts) != 3 || parts[0] != hashPrefix {
		return hmacKey{}, nil, false
	}
	sum, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return hmacKey{}, nil, false
	}
	for _, k := range h.keys {
		if k.id == parts[1] {
			return k, sum, true
		}
	}
	return hmacKey{}, nil, false
}

func mac(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// GenerateSecret returns a new secret with 256 bits of entropy.
func GenerateSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// CheckSecret rejects operator-supplied secrets that are too short to
// be safe behind a fast hash.
func CheckSecret(s string) error {
	if len(s) < MinSecretLen {
		return ErrWeakSecret
	}
	return nil
}
