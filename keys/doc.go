// Package keys owns wxidp's signing keys and its encryption at rest.
//
// Cipher seals every stored secret (signing keys, WeChat app secrets, session
// keys) with AES-256-GCM under keys derived from WXIDP_SECRETS: the first
// secret encrypts, all of them decrypt, so secrets rotate without downtime.
// Reseal moves every stored value to the first secret; what each kind of
// value is bound to (its associated data) comes from storage.SealedSpecs.
//
// Manager keeps the parsed signing keys in memory and refreshes them from the
// store on a timer, never per request: reading and decrypting keys on the
// token path is what makes the best-known peer slow (see
// shared/notes/performance.md). It serves the JWKS as pre-serialised bytes
// with an ETag and hands fosite a Signer that verifies by kid, so tokens
// signed by a key that is no longer active still verify while published.
package keys
