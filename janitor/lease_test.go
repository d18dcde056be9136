package janitor_test

import (
	"context"
	"testing"
	"time"

	"github.com/wxidp/wxidp/janitor"
	"github.com/wxidp/wxidp/storage/memory"
)

// lateLeaseStore models what PostgreSQL does with a statement whose caller
// gives up on it: pgx closes the connection when the context ends, but the
// INSERT may already sit in the server's socket buffer and commit after the
// caller has moved on (and after its DELETE on another connection). The
// first TryLease waits until the test lets it go; if its context ended
// meanwhile it reports the cancellation and takes the lease only when the
// test calls land.
type lateLeaseStore struct {
	janitor.Store
	entered, proceed chan struct{}
	land             chan func()
}

func (s *lateLeaseStore) TryLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	select {
	case <-s.entered:
		return s.Store.TryLease(ctx, name, holder, now, until)
	default:
	}
	close(s.entered)
	<-s.proceed
	if err := ctx.Err(); err != nil {
		s.land <- func() { _, _ = s.Store.TryLease(context.Background(), name, holder, now, until) }
		return false, err
	}
	return s.Store.TryLease(ctx, name, holder, now, until)
}

// TestRunOnceCanceledLeavesNoLease: SIGTERM arriving while the janitor
// takes its lease must not leave the lease held for its full term (the
// shutdown test saw "1 leases still held after exit" in CI): the lease
// statement is not cut short, so the release that follows always comes
// after it.
func TestRunOnceCanceledLeavesNoLease(t *testing.T) {
	t.Parallel()
	mem := memory.New()
	store := &lateLeaseStore{Store: mem, entered: make(chan struct{}), proceed: make(chan struct{}), land: make(chan func(), 1)}
	j := janitor.New(store, janitor.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := j.RunOnce(ctx)
		done <- err
	}()
	<-store.entered
	cancel()
	close(store.proceed)
	<-done
	select {
	case land := <-store.land:
		land()
	default:
	}
	now := time.Now()
	if ok, err := mem.TryLease(context.Background(), "janitor", "next-process", now, now.Add(time.Minute)); err != nil || !ok {
		t.Fatalf("after a canceled run the janitor lease is still held (TryLease by another process: %v, %v)", ok, err)
	}
}
