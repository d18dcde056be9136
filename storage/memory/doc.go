// Package memory is a storage.Store held in process memory, for
// `wxidp serve --dev` and for tests of code above storage. Nothing survives a
// restart.
//
// It does not implement storage.Resealer: starting empty in every process,
// it never holds a value sealed under a secret that has since been dropped,
// so there is nothing to re-encrypt or to check at start-up. Its leases are
// kept: `serve --dev` runs the janitor and the WeChat token refresh, and the
// token lease is what stops concurrent requests of one process from each
// forcing a refresh that invalidates the token the other just got.
//
// One mutex guards every map, so each method is atomic. Transactions give
// atomicity but no isolation: a write made inside a transaction is visible to
// everyone at once, and Rollback undoes it by replaying an undo log, restoring
// the values the transaction overwrote. That is enough for fosite, which uses
// transactions to undo a half-finished token response, not to hide one.
// One exception mirrors PostgreSQL's row lock: a transaction that rotates a
// refresh token or links a login holds its user until it ends, and
// disabling or erasing that user waits for it, so no token of a login in
// flight outlives the disable.
package memory
