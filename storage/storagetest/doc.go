// Package storagetest is the conformance suite every storage backend runs.
//
// A backend's test calls Run with a constructor that hands each subtest a
// fresh, empty store, typed as the backend's own store so that Run sees its
// optional capabilities (the Reseal and SealedHeaders groups run only for a
// storage.Resealer):
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) *memory.Store { return memory.New() })
//	}
//
// RunGrace runs the cases that need store options Run cannot pass: the
// refresh grace period and a settable clock, with which the grace period and
// purging by deactivation time are tested without sleeping:
//
//	func TestConformanceGrace(t *testing.T) {
//		storagetest.RunGrace(t, func(_ *testing.T, grace time.Duration, now func() time.Time) storage.Store {
//			return memory.New(memory.WithRefreshGrace(grace), memory.WithClock(now))
//		})
//	}
//
// The suite turns the rules in storage.FositeStore's doc comment, and the
// storage expectations fosite only states in comments, into test cases, so
// the in-memory and PostgreSQL backends cannot drift apart. Every subtest
// runs in parallel, which is why newStore must isolate stores from each
// other (a schema or database per call for PostgreSQL).
package storagetest
