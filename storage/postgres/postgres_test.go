package postgres_test

import (
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
	"github.com/wxidp/wxidp/storage/storagetest"
)

// TestConformance runs the shared storage suite, each subtest on a database
// of its own.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *postgres.Store {
		s, _, _ := postgrestest.NewStore(t)
		return s
	})
}

func TestConformanceGrace(t *testing.T) {
	storagetest.RunGrace(t, func(t *testing.T, grace time.Duration, now func() time.Time) storage.Store {
		s, _, _ := postgrestest.NewStore(t, postgres.WithRefreshGrace(grace), postgres.WithClock(now))
		return s
	})
}
