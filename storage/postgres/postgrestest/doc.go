// Package postgrestest gives tests anywhere in the repository a PostgreSQL
// database of their own: DSN creates a fresh, uniquely named database on the
// server in WXIDP_TEST_DATABASE_URL and drops it when the test ends; NewStore
// adds the schema, a pool and a storage/postgres Store on top. Tests can then
// run in parallel without seeing each other's rows.
//
// A server that cannot be reached fails the test with the command that
// fixes it. It never skips: a suite that silently skips its database tests
// reports green while testing nothing.
package postgrestest
