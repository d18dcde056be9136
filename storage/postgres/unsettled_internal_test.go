package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

// TestUnsettledLaterAfterClose: once Store.Close has stopped settling, a
// rotation handed over later (a batch or a caller that ended while the store
// closed) starts nothing: no settler runs on the closed store, and none is
// added to the WaitGroup while close waits on it (the race detector reports
// that Add as a race with Wait).
func TestUnsettledLaterAfterClose(t *testing.T) {
	t.Parallel()
	u := newUnsettled()
	u.close()
	var ran atomic.Bool
	u.later("sig", func(context.Context) error { ran.Store(true); return nil })
	u.close() // waits for a settler, had one started
	if ran.Load() {
		t.Fatal("a settler ran after close")
	}
	if u.has("sig") {
		t.Fatal("a rotation handed over after close stays unsettled")
	}

	for range 50 {
		u := newUnsettled()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			u.later("sig", func(context.Context) error { return nil })
		}()
		go func() { defer wg.Done(); u.close() }()
		wg.Wait()
		u.close()
		if u.has("sig") {
			t.Fatal("a rotation stays unsettled after close")
		}
	}
}
