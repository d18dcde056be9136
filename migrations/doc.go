// Package migrations holds wxidp's database schema as plain numbered goose SQL
// files embedded in the binary, and applies them.
//
// Up runs under a PostgreSQL session-level advisory lock, so any number of
// processes may run `wxidp migrate up` against one database at the same time:
// one applies the pending files, the others wait for the lock and then find
// nothing left to do.
//
// Files are never edited once released; a schema change is a new file with the
// next number.
package migrations
