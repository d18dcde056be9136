package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// TestAccessTokenLookupsBatched: concurrent lookups of access tokens share
// round trips, and each still gets its own answer: its row (its own copy
// when two ask for the same token), not found for an unknown token, not
// found for one revoked before it asked.
func TestAccessTokenLookupsBatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rt := tracedStore(t)
	client := &storage.Client{ID: "rs"}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	const n = 64
	for i := range n {
		req := grantRequest(client, fmt.Sprintf("grant-%d", i))
		if err := s.CreateAccessTokenSession(ctx, fmt.Sprintf("at-%d", i), req); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeAccessToken(ctx, "grant-3"); err != nil {
		t.Fatal(err)
	}
	for range 3 { // warm the pool's connections and statements
		_, _ = s.GetAccessTokenSession(ctx, "at-0", openid.NewDefaultSession())
	}

	checkBatched(t, rt, 3*n, func(i int) error { // a third unknown, a third asked twice
		if i >= 2*n {
			i -= 2 * n
		}
		key := fmt.Sprintf("at-%d", i)
		req, err := s.GetAccessTokenSession(ctx, key, openid.NewDefaultSession())
		switch {
		case i >= n || i == 3:
			if !errors.Is(err, fosite.ErrNotFound) {
				return fmt.Errorf("%s (unknown or revoked): %v, want not found", key, err)
			}
		case err != nil:
			return fmt.Errorf("%s: %v", key, err)
		case req.GetID() != fmt.Sprintf("grant-%d", i) || req.GetSession().GetSubject() != fmt.Sprintf("sub-grant-%d", i):
			return fmt.Errorf("%s: got the row of %s (%s)", key, req.GetID(), req.GetSession().GetSubject())
		}
		return nil
	})
}

// TestRefreshTokenLookupsBatched: concurrent refresh-token lookups (the
// first read of every refresh) share round trips as access-token lookups
// do, and each still gets its own answer: its row, not found for an
// unknown token, and for a rotated token its request with
// fosite.ErrInactiveToken (which the reuse detection needs).
func TestRefreshTokenLookupsBatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rt := tracedStore(t)
	client := &storage.Client{ID: "mp"}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	const n = 64
	for i := range n {
		req := grantRequest(client, fmt.Sprintf("grant-%d", i))
		if err := s.CreateRefreshTokenSession(ctx, fmt.Sprintf("rt-%d", i), fmt.Sprintf("at-%d", i), req); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RotateRefreshToken(ctx, "grant-3", "rt-3"); err != nil {
		t.Fatal(err)
	}
	for range 3 { // warm the pool's connections and statements
		_, _ = s.GetRefreshTokenSession(ctx, "rt-0", openid.NewDefaultSession())
	}

	checkBatched(t, rt, 3*n, func(i int) error { // a third unknown, a third asked twice
		if i >= 2*n {
			i -= 2 * n
		}
		key := fmt.Sprintf("rt-%d", i)
		req, err := s.GetRefreshTokenSession(ctx, key, openid.NewDefaultSession())
		switch {
		case i >= n:
			if !errors.Is(err, fosite.ErrNotFound) {
				return fmt.Errorf("%s (unknown): %v, want not found", key, err)
			}
		case i == 3:
			if !errors.Is(err, fosite.ErrInactiveToken) || req == nil || req.GetID() != "grant-3" {
				return fmt.Errorf("%s (rotated): %v, %v, want grant-3's request and ErrInactiveToken", key, req, err)
			}
		case err != nil:
			return fmt.Errorf("%s: %v", key, err)
		case req.GetID() != fmt.Sprintf("grant-%d", i) || req.GetSession().GetSubject() != fmt.Sprintf("sub-grant-%d", i):
			return fmt.Errorf("%s: got the row of %s (%s)", key, req.GetID(), req.GetSession().GetSubject())
		}
		return nil
	})
}

// checkBatched makes calls concurrent calls of call(i), i from 0, fails the
// test with each error returned, and fails it unless the calls shared round
// trips (fewer than half of one each).
func checkBatched(t *testing.T, rt *roundTrips, calls int, call func(i int) error) {
	t.Helper()
	before := rt.n.Load()
	checkConcurrent(t, calls, call)
	if trips := rt.n.Load() - before; trips >= int64(calls)/2 {
		t.Errorf("%d concurrent calls took %d round trips, want them batched", calls, trips)
	} else {
		t.Logf("%d concurrent calls took %d round trips", calls, trips)
	}
}

// checkConcurrent runs call calls times at once and reports their errors.
func checkConcurrent(t *testing.T, calls int, call func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			if err := call(i); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestBatchesTraced: with a tracer, each batched call is a span of its
// caller's trace, and each batch a span under one of its callers' waits,
// linked to every one of them, so every caller leads to its batch. With
// ratio sampling, a batch is recorded whenever one of its callers is.
func TestBatchesTraced(t *testing.T) {
	t.Parallel()
	for name, sampler := range map[string]sdktrace.Sampler{
		"always": sdktrace.AlwaysSample(),
		"ratio":  sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.5)),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkBatchesTraced(t, sampler)
		})
	}
}

func checkBatchesTraced(t *testing.T, sampler sdktrace.Sampler) {
	ctx := context.Background()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr), sdktrace.WithSampler(sampler))
	s, _, _ := postgrestest.NewStore(t, postgres.WithTracerProvider(tp))
	client := &storage.Client{ID: "rs"}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessTokenSession(ctx, "at-0", grantRequest(client, "grant-0")); err != nil {
		t.Fatal(err)
	}
	const n = 64
	var sampled sync.Map // request span -> true, for the sampled ones
	checkConcurrent(t, n, func(i int) error {
		ctx, span := tp.Tracer("test").Start(ctx, "request")
		defer span.End()
		if span.SpanContext().IsSampled() {
			sampled.Store(span.SpanContext().SpanID(), true)
		}
		_, err := s.GetAccessTokenSession(ctx, "at-0", openid.NewDefaultSession())
		return err
	})

	// A batch's span ends just after it answered its callers: wait for it.
	var problems []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		problems = batchSpanProblems(sr.Ended(), &sampled)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// batchSpanProblems checks the recorded spans of checkBatchesTraced.
func batchSpanProblems(spans []sdktrace.ReadOnlySpan, sampled *sync.Map) []string {
	var problems []string
	waits := map[trace.SpanID]trace.SpanID{} // wait span -> its request's span
	linked := map[trace.SpanID]int{}         // wait span -> batches linking it
	batches := 0
	for _, sp := range spans {
		switch sp.Name() {
		case "postgres batched get access token":
			waits[sp.SpanContext().SpanID()] = sp.Parent().SpanID()
		case "postgres batch get access token":
			batches++
			parentLinked := false
			for _, l := range sp.Links() {
				linked[l.SpanContext.SpanID()]++
				parentLinked = parentLinked || l.SpanContext.SpanID() == sp.Parent().SpanID()
			}
			if !parentLinked {
				problems = append(problems, fmt.Sprintf("batch span under %v, which it does not link", sp.Parent().SpanID()))
			}
		}
	}
	requests := 0
	sampled.Range(func(id, _ any) bool {
		requests++
		if !slices.Contains(slices.Collect(maps.Values(waits)), id.(trace.SpanID)) {
			problems = append(problems, fmt.Sprintf("request %v has no wait span", id))
		}
		return true
	})
	for w := range waits {
		if linked[w] != 1 {
			problems = append(problems, fmt.Sprintf("wait span %v linked by %d recorded batches, want 1", w, linked[w]))
		}
	}
	if len(waits) != requests || batches == 0 || batches >= 32 {
		problems = append(problems, fmt.Sprintf("%d wait spans of %d sampled requests, %d batches for 64 concurrent calls", len(waits), requests, batches))
	}
	return problems
}
