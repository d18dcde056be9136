// Package postgrestest gives tests anywhere in the repository a PostgreSQL
// database of their own: DSN creates a fresh, uniquely named database on the
// server in WXIDP_TEST_DATABASE_URL and drops it when the test ends; NewStore
// adds the schema, a pool and a storage/postgres Store on top. Tests can then
// run in parallel without seeing each other's rows.
//
// NewStore copies its database from a template migrated once per server and
// schema (named TemplatePrefix + a hash of the migration files), which halves
// its cost; DSN's databases are empty, for tests of the migrations themselves.
//
// A server that cannot be reached fails the test with the command that
// fixes it. It never skips: a suite that silently skips its database tests
// reports green while testing nothing.
package postgrestest
