package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/exaring/otelpgx"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/wxidp/wxidp/provider/wechat"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/web"
)

// tracing is serve's OpenTelemetry wiring: spans for HTTP requests,
// database statements and WeChat calls. It is off, and every method a
// no-op, unless the standard OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, or a test passes a provider.
// The provider is handed to each instrumentation rather than installed as
// otel's global, so tests can run servers side by side.
type tracing struct {
	tp       trace.TracerProvider // nil: off
	shutdown func(context.Context) error
}

// tracingShutdownTimeout bounds the flush of buffered spans on exit.
const tracingShutdownTimeout = 5 * time.Second

// startTracing returns the tracing of given when set (tests), else of an
// OTLP/HTTP exporter configured by the standard OTEL_* variables (endpoint,
// headers, TLS, timeouts, OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES), or no tracing when no endpoint is set.
func startTracing(ctx context.Context, given trace.TracerProvider) (*tracing, error) {
	if given != nil {
		return &tracing{tp: given}, nil
	}
	if !tracingConfigured() {
		return &tracing{}, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	// Later options win: OTEL_SERVICE_NAME overrides "wxidp".
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("wxidp")),
		resource.WithTelemetrySDK(), resource.WithHost(), resource.WithProcessPID(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &tracing{tp: tp, shutdown: tp.Shutdown}, nil
}

// tracingConfigured reads the variables that turn tracing on;
// OTEL_SDK_DISABLED=true keeps it off whatever they say.
func tracingConfigured() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// close flushes the spans still buffered; runServe defers it, so the spans
// of the requests drained at shutdown are sent too.
func (t *tracing) close(log *slog.Logger) {
	if t.shutdown == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	if err := t.shutdown(ctx); err != nil {
		log.Warn("flush traces", "err", err)
	}
}

// http wraps a listener's handler in server spans.
func (t *tracing) http(h http.Handler) http.Handler { return web.Traced(h, t.tp) }

// db returns the pool options that trace every statement. The statement
// text is recorded (it holds only placeholders), never the arguments:
// they are token signatures, hashes and sealed secrets.
func (t *tracing) db() []postgres.OpenOption {
	if t.tp == nil {
		return nil
	}
	return []postgres.OpenOption{postgres.WithTracer(otelpgx.NewTracer(otelpgx.WithTracerProvider(t.tp)))}
}

// wechat returns the WeChat client option that traces its calls.
func (t *tracing) wechat() wechat.Option { return wechat.WithTracerProvider(t.tp) }
