package memory_test

import (
	"testing"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
	"github.com/wxidp/wxidp/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Store { return memory.New() })
}
