package main

import (
	"math/bits"
	"time"
)

// histogram records latencies in log-linear buckets, HDR style: values
// below 2^subBits nanoseconds exactly, larger ones with subBits bits of
// mantissa, so a reported quantile is within 1/2^subBits (0.8%) of the
// truth whatever the run length, in a fixed 36 KB per worker. Each worker
// owns one and they are merged at the end, so the hot path takes no lock.
type histogram struct {
	counts [buckets]uint64
	n      uint64
	max    time.Duration
}

const (
	subBits    = 7
	subBuckets = 1 << subBits
	// Exponents up to 40 cover 2^47 ns (39 hours): any request a client
	// timeout lets through.
	buckets = (41 + 1) * subBuckets
)

func bucketOf(ns uint64) int {
	if ns < subBuckets {
		return int(ns)
	}
	e := bits.Len64(ns) - subBits - 1 // shift that leaves subBits+1 significant bits
	i := (e+1)*subBuckets + int(ns>>uint(e)&(subBuckets-1))
	return min(i, buckets-1)
}

// upper is the largest value bucket i holds: quantiles err on the slow side.
func upper(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	e := i/subBuckets - 1
	m := uint64(i%subBuckets) | subBuckets
	return time.Duration((m+1)<<uint(e) - 1)
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the latency q (0..1) of the requests are at or below;
// never above the exact maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(upper(i), h.max)
		}
	}
	return h.max
}
