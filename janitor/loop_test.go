package janitor_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/janitor"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
)

var errInjected = errors.New("injected purge failure")

// signallingStore is the memory store with fault injection: every purge
// first reports itself on runs (until ctx ends), and the first one fails.
type signallingStore struct {
	janitor.Store
	runs   chan struct{}
	purges int // only the Loop goroutine touches it
}

func (s *signallingStore) PurgeExpired(ctx context.Context, expiredBefore, inactiveBefore time.Time, batch int) (storage.PurgeStats, error) {
	select {
	case s.runs <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.purges++
	if s.purges == 1 {
		return nil, errInjected
	}
	return s.Store.PurgeExpired(ctx, expiredBefore, inactiveBefore, batch)
}

// TestLoop: Loop runs the janitor again and again on its interval, logs a
// failed run and carries on, and returns once ctx ends without reporting
// the run the cancellation cut short as a failure.
func TestLoop(t *testing.T) {
	t.Parallel()
	store := &signallingStore{Store: memory.New(), runs: make(chan struct{})}
	var logs bytes.Buffer // written by Loop, read after it returned
	j := janitor.New(store, janitor.Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		j.Loop(ctx, time.Millisecond)
	}()
	// Three runs: the failing first one, then two more on later ticks (a
	// run whose purge finds nothing purges once).
	for i := range 3 {
		select {
		case <-store.runs:
		case <-done:
			t.Fatalf("Loop returned after %d runs, before its context ended", i)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Loop did not return after its context ended")
	}
	got := logs.String()
	if n := strings.Count(got, "level=ERROR"); n != 1 || !strings.Contains(got, errInjected.Error()) {
		t.Errorf("want the injected failure logged once as an error, and nothing else; got %d error lines:\n%s", n, got)
	}
}
