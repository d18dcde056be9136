//go:build !(openssl && cgo)

package keys

import (
	"crypto/rsa"
	"runtime"
)

// SignerName names the RS256 signer tokens are signed with in this build:
// "go" here; "openssl" in a build with -tags openssl and cgo (see
// docs/BENCHMARKS.md, "Signers").
const SignerName = "go"

// SignerVersion describes the signer's implementation, for `wxidp version`.
func SignerVersion() string { return "crypto/rsa, " + runtime.Version() }

func newRS256(priv *rsa.PrivateKey) (RS256Signer, error) { return newGoRS256(priv) }
