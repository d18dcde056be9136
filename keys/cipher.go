package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/wxidp/wxidp/storage"
)

// MinSecretLen is the shortest system secret accepted, in bytes.
const MinSecretLen = 32

// Errors a caller may want to tell apart.
var (
	ErrSecretTooShort = errors.New("keys: every secret in WXIDP_SECRETS must be at least 32 bytes")
	ErrNoSecrets      = errors.New("keys: WXIDP_SECRETS is empty")
	// ErrUndecryptable means no configured secret opens the ciphertext: the
	// secret that sealed it is missing from WXIDP_SECRETS, or the data was
	// altered.
	ErrUndecryptable = errors.New("keys: ciphertext cannot be decrypted with any configured secret (missing secret or corrupted data)")
)

// A sealed value starts with a header: the format version, then the
// fingerprint of the secret that sealed it. Its length is storage's
// SealedHeaderLen by definition, since storage lists and indexes exactly
// that many bytes to tell which secrets are in use.
const (
	sealVersion = 1
	headerLen   = storage.SealedHeaderLen
	keyIDLen    = headerLen - 1
)

// Cipher seals and opens secrets at rest. The sealed form names the secret
// that sealed it (a 4-byte fingerprint), so opening needs no trial and
// rotation can tell which rows still use an old secret.
type Cipher struct {
	keys []sealKey
}

type sealKey struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

// NewCipher derives one AES-256-GCM key per secret. The first secret seals.
func NewCipher(secrets []string) (*Cipher, error) {
	if len(secrets) == 0 {
		return nil, ErrNoSecrets
	}
	c := &Cipher{}
	for i, s := range secrets {
		if len(s) < MinSecretLen {
			// Name the position, never the secret.
			return nil, fmt.Errorf("%w: secret #%d has %d bytes", ErrSecretTooShort, i+1, len(s))
		}
		k, err := DeriveKey(s, "wxidp/at-rest/aes-256-gcm/v1")
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sk := sealKey{aead: aead}
		fp := sha256.Sum256(k)
		copy(sk.id[:], fp[:keyIDLen])
		c.keys = append(c.keys, sk)
	}
	return c, nil
}

// DeriveKey derives a 32-byte key for one purpose from a system secret, so
// no two uses (encryption, client-secret hashing) share key material.
func DeriveKey(secret, purpose string) ([]byte, error) {
	return hkdf.Key(sha256.New, []byte(secret), nil, purpose, 32)
}

// Seal encrypts plaintext under the first secret. aad binds the ciphertext to
// its place (for example the kid of a signing key), so a row copied onto
// another does not decrypt.
func (c *Cipher) Seal(plaintext, aad []byte) ([]byte, error) {
	k := c.keys[0]
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := make([]byte, 0, headerLen+len(nonce)+len(plaintext)+k.aead.Overhead())
	out = append(out, sealVersion)
	out = append(out, k.id[:]...)
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts what Seal produced with any configured secret.
func (c *Cipher) Open(sealed, aad []byte) ([]byte, error) {
	k, ok := c.keyFor(sealed)
	if !ok {
		return nil, ErrUndecryptable
	}
	n := k.aead.NonceSize()
	if len(sealed) < headerLen+n {
		return nil, ErrUndecryptable
	}
	nonce := sealed[headerLen : headerLen+n]
	pt, err := k.aead.Open(nil, nonce, sealed[headerLen+n:], aad)
	if err != nil {
		return nil, ErrUndecryptable
	}
	return pt, nil
}

// Current reports whether sealed was sealed under the first secret; rows
// that are not need re-encryption before an old secret is dropped.
func (c *Cipher) Current(sealed []byte) bool {
	return len(sealed) >= headerLen && sealed[0] == sealVersion && [keyIDLen]byte(sealed[1:headerLen]) == c.keys[0].id
}

func (c *Cipher) keyFor(sealed []byte) (sealKey, bool) {
	if len(sealed) < headerLen || sealed[0] != sealVersion {
		return sealKey{}, false
	}
	for _, k := range c.keys {
		if [keyIDLen]byte(sealed[1:headerLen]) == k.id {
			return k, true
		}
	}
	return sealKey{}, false
}

// Recognizes reports whether a sealed value's header (its first
// storage.SealedHeaderLen bytes) names a secret this cipher holds, without
// decrypting anything: start-up checks every header in use this way.
func (c *Cipher) Recognizes(header []byte) bool {
	_, ok := c.keyFor(header)
	return ok
}

// Fingerprint names the secret a header points to, for error messages: the
// 4-byte id is a hash of a derived key and reveals nothing of the secret.
func Fingerprint(header []byte) string {
	if len(header) < headerLen {
		return "corrupt"
	}
	return hex.EncodeToString(header[1:headerLen])
}
