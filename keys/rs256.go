package keys

import (
	"crypto/rsa"
	"errors"

	josev3 "github.com/go-jose/go-jose/v3"
)

// RS256Signer makes RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signatures with
// one private key. It is created when a key is loaded, never per request:
// an OpenSSL key costs a parse and a self-test to set up. Sign is safe for
// concurrent use; Close releases the key, after which Sign fails with
// ErrSignerClosed. Closing twice is harmless.
//
// It is an alias, not a defined type, so that callers may spell it as the
// bare interface.
type RS256Signer = interface {
	Sign(signingInput []byte) ([]byte, error)
	Close()
}

// ErrSignerClosed means a token was to be signed with a key this process
// has dropped (revoked, or retired and deleted) after the request had picked
// it up: the request fails rather than sign with a key no longer trusted.
var ErrSignerClosed = errors.New("keys: signing key no longer loaded")

// Signers returns a constructor for every RS256 signer built into this
// binary, by name: "go" (crypto/rsa) always, and "openssl" in a build with
// -tags openssl and cgo. SignerName names the one tokens are signed with.
// Load tools use it to measure each signer's ceiling.
func Signers() map[string]func(*rsa.PrivateKey) (RS256Signer, error) {
	m := map[string]func(*rsa.PrivateKey) (RS256Signer, error){"go": newGoRS256}
	m[SignerName] = newRS256
	return m
}

// opaqueRS256 lets go-jose (and so fosite) sign through an RS256Signer: the
// manager hands fosite a v3 JSONWebKey whose Key is this, and go-jose takes
// the kid from that JSONWebKey and the public key from Public.
type opaqueRS256 struct {
	pub *rsa.PublicKey
	s   RS256Signer
}

var _ josev3.OpaqueSigner = (*opaqueRS256)(nil)

func (o *opaqueRS256) Public() *josev3.JSONWebKey {
	// A fresh value each time: go-jose copies fields out of it, and no
	// caller can then change the key another request sees.
	return &josev3.JSONWebKey{Key: o.pub, Algorithm: string(josev3.RS256), Use: "sig"}
}

func (o *opaqueRS256) Algs() []josev3.SignatureAlgorithm {
	return []josev3.SignatureAlgorithm{josev3.RS256}
}

func (o *opaqueRS256) SignPayload(payload []byte, alg josev3.SignatureAlgorithm) ([]byte, error) {
	if alg != josev3.RS256 {
		return nil, josev3.ErrUnsupportedAlgorithm
	}
	return o.s.Sign(payload)
}
