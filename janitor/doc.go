// Package janitor deletes rows that can no longer matter — expired tokens,
// codes, JTIs and WeChat code claims, refresh tokens deactivated long ago,
// and audit events past their retention — in bounded batches, so the tables
// stay small without a table-wide lock or a full-table read. A lease in the
// database lets one process at a time do the work when every `wxidp serve`
// runs the janitor.
package janitor
