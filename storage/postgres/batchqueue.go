package postgres

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// batchQueue is the pending work of a batcher (batchwrite.go, batchread.go):
// callers add to it and start a runner while fewer than maxWriters run;
// each runner takes up to maxBatch at a time until the queue is empty, then
// ends, so no goroutine outlives the work and a Store needs no Close for it.
//
// A batch runs on no caller's context (it serves many, and outlives any
// one that gives up), so traced, it would be in no request's trace. With a
// tracer, each caller's wait is a span of its request ("postgres batched
// <name>"), and each batch a span ("postgres batch <name>") under its first
// sampled caller's wait, linked to every caller's: its statements appear in
// that request's trace, and the others lead to them by the links.
type batchQueue[T any] struct {
	mu      sync.Mutex
	pending []T
	waits   []trace.Link // the callers' wait spans, parallel to pending (traced only)
	runners int
	name    string
	tracer  trace.Tracer // nil: not traced
}

// traceAs names the queue's spans and traces them with tracer (nil: off).
func (q *batchQueue[T]) traceAs(tracer trace.Tracer, name string) {
	q.tracer, q.name = tracer, name
}

// add queues p, whose caller waits in span wait, and reports whether the
// caller must start a runner (which then calls take until it returns nil).
func (q *batchQueue[T]) add(p T, wait trace.Link) (startRunner bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending = append(q.pending, p)
	if q.tracer != nil {
		q.waits = append(q.waits, wait)
	}
	if q.runners < maxWriters {
		q.runners++
		return true
	}
	return false
}

// take returns the next batch and its callers' wait spans, or nil once
// the queue is empty: the runner has been counted out and must end.
func (q *batchQueue[T]) take() ([]T, []trace.Link) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.pending), maxBatch)
	if n == 0 {
		q.runners--
		return nil, nil
	}
	batch := q.pending[:n:n]
	if q.pending = q.pending[n:]; len(q.pending) == 0 {
		q.pending = nil // let the drained array (and its entries) go
	}
	m := min(len(q.waits), n) // n when traced: add appends to both
	waits := q.waits[:m:m]
	if q.waits = q.waits[m:]; len(q.waits) == 0 {
		q.waits = nil
	}
	return batch, waits
}

// drain empties the queue and returns what was pending.
func (q *batchQueue[T]) drain() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.pending
	q.pending, q.waits = nil, nil
	return p
}

// failAll answers rest and then everything queued with answer: after an
// outage, they would each wait it out in turn.
func (q *batchQueue[T]) failAll(rest []T, answer func(T)) {
	for _, p := range append(rest, q.drain()...) {
		answer(p)
	}
}

// each runs fn on batch after batch until the queue is empty (a runner's
// loop), each batch on a context of its own span when traced.
func (q *batchQueue[T]) each(fn func(ctx context.Context, batch []T)) {
	for batch, waits := q.take(); batch != nil; batch, waits = q.take() {
		if q.tracer == nil || len(waits) == 0 {
			fn(context.Background(), batch)
			continue
		}
		ctx, span := q.tracer.Start(trace.ContextWithSpanContext(context.Background(), batchParent(waits)),
			"postgres batch "+q.name, trace.WithLinks(waits...),
			trace.WithAttributes(attribute.Int("wxidp.batch.size", len(batch))))
		fn(ctx, batch)
		span.End()
	}
}

// eachSplit runs batch after batch through send, which reads or writes a
// batch and returns how to answer its callers and the error it met. One
// statement fails for all its batch, so a batch that failed for anything
// but an outage is sent again call by call: one caller's input cannot fail
// the others. After an outage the rest of the batch and everything queued
// are answered with it by fail: they would each wait it out in turn.
func (q *batchQueue[T]) eachSplit(send func(ctx context.Context, batch []T) (answer func(), err error), fail func(p T, err error)) {
	q.each(func(ctx context.Context, batch []T) {
		answer, err := send(ctx, batch)
		if err != nil && !unavailable(err) && len(batch) > 1 {
			for i := range batch {
				answer, err := send(ctx, batch[i:i+1])
				answer()
				if unavailable(err) {
					q.failAll(batch[i+1:], func(p T) { fail(p, err) })
					return
				}
			}
			return
		}
		answer()
		if unavailable(err) {
			q.failAll(nil, func(p T) { fail(p, err) })
		}
	})
}

// batchParent is the wait a batch's span goes under: the first that is
// sampled, so that with ratio sampling a batch is recorded when any of its
// requests is (under an unsampled parent it would not be).
func batchParent(waits []trace.Link) trace.SpanContext {
	for _, w := range waits {
		if w.SpanContext.IsSampled() {
			return w.SpanContext
		}
	}
	return waits[0].SpanContext
}

// submit queues p on q, starting run when a runner is due, and waits for
// p's answer on done. ok is false if ctx ended first; p is answered anyway
// (its runner never waits on a caller), and the caller says what that
// means for its work.
func submit[T, R any](ctx context.Context, q *batchQueue[T], run func(), p T, done <-chan R) (r R, ok bool) {
	var wait trace.Link
	if q.tracer != nil {
		var span trace.Span
		ctx, span = q.tracer.Start(ctx, "postgres batched "+q.name)
		defer span.End()
		wait = trace.Link{SpanContext: span.SpanContext()}
	}
	if q.add(p, wait) {
		go run()
	}
	select {
	case r = <-done:
		return r, true
	case <-ctx.Done():
		return r, false
	}
}
