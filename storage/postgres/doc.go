// Package postgres is the PostgreSQL backend of storage.Store, on pgx/v5.
//
// Every method runs on the transaction BeginTX put in the context when there
// is one, and on the pool otherwise. A pgx transaction is one connection: a
// context carrying one must not be used from several goroutines at once.
//
// Database errors are translated where they leave the package: no rows
// becomes storage.ErrNotFound (fosite.ErrNotFound for fosite's methods), a
// unique violation storage.ErrAlreadyExists, a serialization failure or
// deadlock fosite.ErrSerializationFailure; the driver error stays wrapped.
//
// The schema is in package migrations; this package never changes it.
package postgres
