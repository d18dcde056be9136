package web

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// ContextLogger adds the request ID and trace of the context to each
// record, once, and leaves records logged without a request alone.
func TestContextLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := ContextLogger(slog.New(slog.NewJSONHandler(&buf, nil)).With("component", "test"))
	if ContextLogger(log) != log {
		t.Error("wrapping twice")
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(withRequestID(context.Background(), "rid-1"), sc)

	log.InfoContext(ctx, "with context", "k", "v")
	log.InfoContext(ctx, "access line", "request_id", "rid-1")
	log.Info("background")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines: %q", lines)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["request_id"] != "rid-1" || rec["trace_id"] != sc.TraceID().String() || rec["span_id"] != sc.SpanID().String() || rec["component"] != "test" {
		t.Errorf("record: %v", rec)
	}
	if n := strings.Count(lines[1], `"request_id"`); n != 1 {
		t.Errorf("request_id %d times: %s", n, lines[1])
	}
	if strings.Contains(lines[2], "request_id") || strings.Contains(lines[2], "trace_id") {
		t.Errorf("background line: %s", lines[2])
	}
}
