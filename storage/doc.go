// Package storage holds wxidp's record types, the sentinel errors every backend
// returns, and the store interfaces. Backends live in subpackages
// (storage/postgres, storage/memory); storage/storagetest is the one
// conformance suite they must all pass.
//
// Callers compare errors with errors.Is against the sentinels here for our own
// records (clients, keys). The fosite storage methods return fosite's own
// sentinels (fosite.ErrNotFound, fosite.ErrInactiveToken,
// fosite.ErrInvalidatedAuthorizeCode, fosite.ErrSerializationFailure,
// fosite.ErrJTIKnown), because fosite's handlers branch on exactly those.
package storage
