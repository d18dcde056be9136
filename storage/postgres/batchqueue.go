package postgres

import (
	"context"
	"sync"
)

// batchQueue is the pending work of a batcher (batchwrite.go, batchread.go):
// callers add to it and start a runner while fewer than maxWriters run;
// each runner takes up to maxBatch at a time until the queue is empty, then
// ends, so no goroutine outlives the work and a Store needs no Close for it.
type batchQueue[T any] struct {
	mu      sync.Mutex
	pending []T
	runners int
}

// add queues p and reports whether the caller must start a runner (which
// then calls take until it returns nil).
func (q *batchQueue[T]) add(p T) (startRunner bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending = append(q.pending, p)
	if q.runners < maxWriters {
		q.runners++
		return true
	}
	return false
}

// take returns the next batch, or nil once the queue is empty: the runner
// has been counted out and must end.
func (q *batchQueue[T]) take() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.pending), maxBatch)
	if n == 0 {
		q.runners--
		return nil
	}
	batch := q.pending[:n:n]
	if q.pending = q.pending[n:]; len(q.pending) == 0 {
		q.pending = nil // let the drained array (and its entries) go
	}
	return batch
}

// drain empties the queue and returns what was pending.
func (q *batchQueue[T]) drain() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.pending
	q.pending = nil
	return p
}

// submit queues p on q, starting run when a runner is due, and waits for
// p's answer on done. ok is false if ctx ended first; p is answered anyway
// (its runner never waits on a caller), and the caller says what that
// means for its work.
func submit[T, R any](ctx context.Context, q *batchQueue[T], run func(), p T, done <-chan R) (r R, ok bool) {
	if q.add(p) {
		go run()
	}
	select {
	case r = <-done:
		return r, true
	case <-ctx.Done():
		return r, false
	}
}
