package postgres_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// TestAccessTokenBatches: many concurrent access-token writes (which the
// store batches) each return only once their row is readable, and a bad
// row (a duplicate signature) fails alone, not the rows batched with it.
func TestAccessTokenBatches(t *testing.T) {
	t.Parallel()
	s, _, _ := postgrestest.NewStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c := newTestClient(t, ctx, s, "a")
	if err := s.CreateAccessTokenSession(ctx, "taken", newTestRequest(c, "r-taken")); err != nil {
		t.Fatal(err)
	}
	const n = 300
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sig := "sig-" + strconv.Itoa(i)
			if i%50 == 7 {
				sig = "taken" // a duplicate among the good ones
			}
			if errs[i] = s.CreateAccessTokenSession(ctx, sig, newTestRequest(c, "r-"+strconv.Itoa(i))); errs[i] != nil {
				return
			}
			// Answered means committed: another connection reads it now.
			if _, err := s.GetAccessTokenSession(ctx, sig, nil); err != nil {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		dup := i%50 == 7
		switch {
		case dup && !errors.Is(err, storage.ErrAlreadyExists):
			t.Errorf("duplicate %d: %v, want ErrAlreadyExists", i, err)
		case !dup && err != nil:
			t.Errorf("row %d: %v", i, err)
		}
	}
	// A caller that gives up gets its context's error at once.
	gone, stop := context.WithCancel(ctx)
	stop()
	if err := s.CreateAccessTokenSession(gone, "late", newTestRequest(c, "r-late")); err == nil {
		t.Error("a canceled write answered success")
	}
	// Inside a transaction the write is the transaction's (not batched):
	// rolled back, it is gone.
	txCtx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessTokenSession(txCtx, "in-tx", newTestRequest(c, "r-tx")); err != nil {
		t.Fatal(err)
	}
	if err := s.Rollback(txCtx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "in-tx", nil); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("a rolled-back access token: %v, want not found", err)
	}
}

// TestAccessTokenBatchesHung: a burst of access-token writes against a
// hung database all answer ErrUnavailable within about one deadline, not
// one deadline per batch queued ahead of them.
func TestAccessTokenBatchesHung(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s, proxy := outageStore(t, timeout)
	ctx := t.Context()
	c := newTestClient(t, ctx, s, "a")
	proxy.Hang()
	defer proxy.Up()
	const n = 400 // more than maxWriters × maxBatch: several batches queue
	start := time.Now()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs <- s.CreateAccessTokenSession(ctx, "hung-"+strconv.Itoa(i), newTestRequest(c, "r-"+strconv.Itoa(i)))
		})
	}
	wg.Wait()
	close(errs)
	took := time.Since(start)
	for err := range errs {
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("a write to a hung database: %v, want ErrUnavailable", err)
		}
	}
	if took > 4*timeout {
		t.Errorf("%d writes took %v against a %v deadline: queued batches waited in turn", n, took, timeout)
	}
}
