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

// TestScheduledRotationCallback: a rotation the manager makes on schedule
// is reported with the kids it moved (the audit trail records it).
func TestScheduledRotationCallback(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, err := keys.NewCipher([]string{secret})
	if err != nil {
		t.Fatal(err)
	}
	type rotation struct{ active, retired string }
	got := make(chan rotation, 4)
	m := keys.NewManager(memory.New(), c, keys.Options{
		Log: quiet, Now: clock, JWKSMaxAge: time.Second, ReloadEvery: 10 * time.Millisecond, RotateEvery: time.Hour,
		OnScheduledRotation: func(_ context.Context, active, retired string) { got <- rotation{active, retired} },
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	kidOf := func(state storage.KeyState) string {
		for _, k := range m.Keys() {
			if k.State == state {
				return k.KID
			}
		}
		return ""
	}
	before := kidOf(storage.KeyActive)
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	mu.Lock()
	now = now.Add(48 * time.Hour) // the active key is due, the next one published long enough
	mu.Unlock()
	select {
	case r := <-got:
		if r.retired != before || r.active == "" || r.active == before || r.active != kidOf(storage.KeyActive) {
			t.Errorf("reported rotation %+v; active was %s, is %s", r, before, kidOf(storage.KeyActive))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no scheduled rotation reported")
	}
}
