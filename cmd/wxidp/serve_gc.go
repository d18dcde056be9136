package main

import (
	"os"
	"runtime/debug"
)

// defaultGOGC is the garbage collector's target heap growth for `wxidp
// serve` when the operator sets no GOGC. A token request allocates a lot of
// short-lived memory (forms, claims, JSON, signatures) against a small live
// heap, so Go's default of 100 collects every few milliseconds under load.
// Measured at 64 concurrent clients on 2 cores (docs/BENCHMARKS.md, "Garbage
// collection"): 400 gives 5-14 % more logins and refreshes per second and
// 4-11 % less server CPU per request, for about 20 MB more RSS; 1000 gained
// little more and doubled the RSS.
const defaultGOGC = 400

// setGCDefault applies defaultGOGC unless GOGC is set, in which case the
// runtime has applied the operator's value (off included) already.
// GOMEMLIMIT, if set, still caps the heap either way.
func setGCDefault() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
}
