package postgres

import "sync"

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
