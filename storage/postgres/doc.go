// Package postgres is the PostgreSQL backend of storage.Store, on pgx/v5.
//
// Every method runs on the transaction BeginTX put in the context when there
// is one, and on the pool otherwise. A pgx transaction is one connection: a
// context carrying one must not be used from several goroutines at once.
//
// Database errors are translated where they leave the package: no rows
// becomes storage.ErrNotFound (fosite.ErrNotFound for fosite's methods), a
// unique violation storage.ErrAlreadyExists, a serialization failure or
// deadlock fosite.ErrSerializationFailure, and a database that cannot be
// reached or does not answer within the store's deadline (WithTimeout, on
// every call, waiting for a pooled connection included)
// storage.ErrUnavailable; the driver error stays wrapped.
//
// Every transaction, explicit or a single statement's, runs at READ
// COMMITTED whatever the database's default: the conditional updates,
// leases and identity linking rely on it.
//
// Outside a transaction, the hottest single statements are batched across
// concurrent callers (batchwrite.go, batchread.go, batchclaim.go, a
// returning user's login, fastlogin.go, and a refresh rotation with its new
// tokens, fastrefresh.go): one
// round trip and one commit for many, each caller answered only once its
// own row is committed or read, so batching never weakens what a caller
// can rely on. Traced (WithTracerProvider), a caller's wait and each batch
// are spans, the batch linked to all its callers (batchqueue.go).
//
// The schema is in package migrations; this package never changes it.
package postgres
