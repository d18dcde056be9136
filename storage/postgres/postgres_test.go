package postgres_test

import (
	"testing"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
	"github.com/wxidp/wxidp/storage/storagetest"
)

// TestConformance runs the shared storage suite, each subtest on a database
// of its own.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, _, _ := postgrestest.NewStore(t)
		return s
	})
}
