package memory_test

import (
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
	"github.com/wxidp/wxidp/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(*testing.T) *memory.Store { return memory.New() })
}

func TestConformanceGrace(t *testing.T) {
	storagetest.RunGrace(t, func(_ *testing.T, grace time.Duration, now func() time.Time) storage.Store {
		return memory.New(memory.WithRefreshGrace(grace), memory.WithClock(now))
	})
}
