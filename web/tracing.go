package web

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the instrumentation scope of the HTTP server spans.
const tracerName = "github.com/wxidp/wxidp/web"

// requestIDAttr is the span attribute holding the request ID, the one the
// log lines and the X-Request-Id response header carry.
const requestIDAttr = attribute.Key("wxidp.request_id")

// Traced returns h with every request in a server span of tp, continuing the
// trace of a W3C traceparent header (a load balancer's). The span starts
// here, before routing, so it covers the whole request; traceRequest, inside
// the echo server, then names it after the route pattern. Neither records
// the path or the query: they hold client IDs, subjects and redirect
// parameters. A nil tp returns h unchanged.
func Traced(h http.Handler, tp trace.TracerProvider) http.Handler {
	if tp == nil {
		return h
	}
	tracer := tp.Tracer(tracerName)
	var prop propagation.TraceContext
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		method := spanMethod(r.Method)
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		ctx, span := tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(semconv.HTTPRequestMethodKey.String(method), semconv.URLScheme(scheme)))
		defer span.End()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// traceRequest names the request's span "METHOD /route/{pattern}" and
// records the request ID and the final status. It runs after requestIDs
// and before accessLog, which writes error responses, so the status it
// reads is the one sent. Without Traced the span is not recording and this
// does nothing.
func traceRequest(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		span := trace.SpanFromContext(c.Request().Context())
		if !span.IsRecording() {
			return next(c)
		}
		name := spanMethod(c.Request().Method)
		// Routing is done before middleware runs: Path is the pattern
		// (/admin/clients/:id), or empty when nothing matched.
		if route := c.Path(); route != "" {
			name += " " + route
			span.SetAttributes(semconv.HTTPRoute(route))
		}
		span.SetName(name)
		span.SetAttributes(requestIDAttr.String(requestID(c)))
		err := next(c)
		status := c.Response().Status
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= http.StatusInternalServerError {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			span.SetStatus(codes.Error, "")
		}
		return err
	}
}

// spanMethod keeps span names and attributes to a fixed set: a method a
// client invents is "_OTHER", as OpenTelemetry's HTTP conventions say.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}
