package web

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// requestIDKey carries the request ID in a request's context, for the log
// handler of ContextLogger.
type requestIDKey struct{}

func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFromContext returns the request ID the web layer put in ctx, or
// "" outside a request.
func RequestIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// ContextLogger returns a logger that adds request_id (and, when the request
// is traced, trace_id and span_id) to every record logged with a request's
// context (InfoContext, LogAttrs, ...): the lines of the provider, the
// WeChat client and the keys then tie to the access log line and the trace
// without each caller passing the ID along.
func ContextLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(contextHandler); ok {
		return l
	}
	return slog.New(contextHandler{l.Handler()})
}

// contextHandler is the slog.Handler of ContextLogger.
type contextHandler struct{ next slog.Handler }

func (h contextHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	var add []slog.Attr
	// Lines that already name the request (the access log) keep theirs.
	if id := RequestIDFromContext(ctx); id != "" && !hasAttr(r, "request_id") {
		add = append(add, slog.String("request_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		add = append(add, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	if len(add) > 0 {
		r = r.Clone() // r's attributes may be shared with another handler's copy
		r.AddAttrs(add...)
	}
	return h.next.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return contextHandler{h.next.WithAttrs(as)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.next.WithGroup(name)}
}

func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}
