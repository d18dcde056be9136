package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// workerStats is one worker's tally; only that worker writes it until the
// run ends, so recording takes no lock.
type workerStats struct {
	hist   histogram
	errors map[string]int64
}

// loopResult is a closed-loop run's merged tally of the measured window.
type loopResult struct {
	hist   histogram
	errors map[string]int64
	window time.Duration
	// exhausted: every worker ran out of work before the window ended.
	exhausted bool
}

// loopHooks run at the window's edges (server metrics, the bench's own
// CPU) and on the first failed request of the window.
type loopHooks struct {
	atStart, atEnd func()
	firstError     func(outcome)
}

// closedLoop runs one goroutine per doer, each sending its next request as
// soon as the previous one is answered, for warmup+duration. Requests that
// complete within the window after the warm-up are counted; requests in
// flight at its end finish (their connections stay reusable) but are not.
func closedLoop(ctx context.Context, doers []doer, warmup, duration time.Duration, hooks loopHooks) loopResult {
	winStart := time.Now().Add(warmup)
	winEnd := winStart.Add(duration)
	var (
		stop    atomic.Bool
		errSeen atomic.Bool
		wg      sync.WaitGroup
	)
	stats := make([]workerStats, len(doers))
	for i, d := range doers {
		st := &stats[i]
		st.errors = map[string]int64{}
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil && d.next(ctx) {
				t0 := time.Now()
				o := d.do(ctx)
				t1 := time.Now()
				if t1.Before(winStart) || t1.After(winEnd) {
					continue
				}
				st.hist.record(t1.Sub(t0))
				if o.class != "" {
					st.errors[o.class]++
					if hooks.firstError != nil && errSeen.CompareAndSwap(false, true) {
						hooks.firstError(o)
					}
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// wait reports whether t came before the workers ran out or ctx ended.
	wait := func(t time.Time) bool {
		timer := time.NewTimer(time.Until(t))
		defer timer.Stop()
		select {
		case <-timer.C:
			return true
		case <-done:
		case <-ctx.Done():
		}
		return false
	}
	var res loopResult
	// A window that has begun (no warm-up) counts as begun even if the
	// workers are done already: wait's select would pick between the two at
	// random (TestClosedLoopStopsWhenWorkRunsOut failed so in CI).
	if !time.Now().Before(winStart) || wait(winStart) {
		if hooks.atStart != nil {
			hooks.atStart()
		}
		full := wait(winEnd)
		end := time.Now()
		stop.Store(true)
		if hooks.atEnd != nil {
			hooks.atEnd()
		}
		if end.After(winEnd) {
			end = winEnd
		}
		res.window = end.Sub(winStart)
		res.exhausted = !full && ctx.Err() == nil
	} else {
		res.exhausted = ctx.Err() == nil
	}
	stop.Store(true)
	<-done
	res.errors = map[string]int64{}
	for i := range stats {
		res.hist.merge(&stats[i].hist)
		for k, v := range stats[i].errors {
			res.errors[k] += v
		}
	}
	return res
}
