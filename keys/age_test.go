package keys_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
)

func TestKeyAge(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, err := keys.NewCipher([]string{secret})
	if err != nil {
		t.Fatal(err)
	}
	m := keys.NewManager(memory.New(), c, keys.Options{Log: quiet, Now: clock})
	if _, ok := m.KeyAge(storage.KeyActive); ok {
		t.Fatal("an age before any key is loaded")
	}
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(90 * time.Minute)
	mu.Unlock()
	for _, state := range []storage.KeyState{storage.KeyActive, storage.KeyNext} {
		if age, ok := m.KeyAge(state); !ok || age != 90*time.Minute {
			t.Errorf("%s key age = %v, %v; want 1h30m", state, age, ok)
		}
	}
	if _, ok := m.KeyAge(storage.KeyRetired); ok {
		t.Error("an age for a retired key that does not exist")
	}
}
