// Package memory is a storage.Store held in process memory, for
// `wxidp serve --dev` and for tests of code above storage. Nothing survives a
// restart.
//
// One mutex guards every map, so each method is atomic. Transactions give
// atomicity but no isolation: a write made inside a transaction is visible to
// everyone at once, and Rollback undoes it by replaying an undo log, restoring
// the values the transaction overwrote. That is enough for fosite, which uses
// transactions to undo a half-finished token response, not to hide one.
package memory
