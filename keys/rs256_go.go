package keys

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"sync/atomic"
)

// goRS256 signs with crypto/rsa: the default build's signer, and the
// reference every other signer must match byte for byte (PKCS#1 v1.5 is
// deterministic).
type goRS256 struct {
	priv   *rsa.PrivateKey
	closed atomic.Bool
}

func newGoRS256(priv *rsa.PrivateKey) (RS256Signer, error) {
	if priv == nil {
		return nil, errors.New("keys: rs256: no private key")
	}
	return &goRS256{priv: priv}, nil
}

func (g *goRS256) Sign(signingInput []byte) ([]byte, error) {
	// Closed behaves as in the OpenSSL signer, so a dropped key stops
	// signing in either build.
	if g.closed.Load() {
		return nil, ErrSignerClosed
	}
	sum := sha256.Sum256(signingInput)
	// The random source is ignored (blinding draws its own randomness).
	return rsa.SignPKCS1v15(nil, g.priv, crypto.SHA256, sum[:])
}

func (g *goRS256) Close() { g.closed.Store(true) }
