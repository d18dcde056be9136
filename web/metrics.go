package web

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the Prometheus collectors of both listeners. It owns its
// registry (no process-wide default), so tests and several servers in one
// process do not collide.
//
// Label rule, for every metric on this registry (Registerer included):
// label values come from fixed sets written in the code — a route pattern,
// a known enum value, or "other" for anything else — never from request
// input (raw paths, methods, client IDs, addresses, error messages). Any
// client can send anything; bounded label values keep the number of series,
// and so Prometheus' memory, bounded whatever they send.
type Metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	wechat   *prometheus.HistogramVec
}

// MetricsOption adds a scrape-time source to Metrics.
type MetricsOption func(*Metrics)

// NewMetrics registers the HTTP, token and WeChat collectors, Go runtime and
// process ones, and those of opts.
func NewMetrics(opts ...MetricsOption) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wxidp_http_requests_total",
			Help: "HTTP requests by listener, route pattern (or unmatched), method (known or other) and status class.",
		}, []string{"listener", "route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wxidp_http_request_duration_seconds",
			Help:    "HTTP request latency by listener and route pattern (or unmatched).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"listener", "route"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wxidp_tokens_issued_total",
			Help: "Token endpoint requests by grant type and outcome: issued, or the RFC 6749 error code.",
		}, []string{"grant", "outcome"}),
		wechat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wxidp_wechat_request_duration_seconds",
			Help:    "WeChat API request latency by operation and errcode (0, a known errcode, other, or transport).",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation", "errcode"}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.tokens, m.wechat,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, o := range opts {
		o(m)
	}
	return m
}

// Registerer lets other parts of the server register their own collectors
// on this registry. Follow the label rule of Metrics.
func (m *Metrics) Registerer() prometheus.Registerer { return m.registry }

// knownMethods are the methods counted under their own name; anything else,
// including methods a client invents, is "other".
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodDelete: true, http.MethodPatch: true, http.MethodOptions: true,
}

func methodLabel(method string) string {
	if knownMethods[method] {
		return method
	}
	return "other"
}

// statusClass is "2xx" ... "5xx"; a departed client's 499 counts as 4xx.
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}

// middleware records each request under its route pattern (never the raw
// path, which would let clients create unbounded label values).
func (m *Metrics) middleware(listener string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			// c.Path() is a pattern from the router's tree (registered
			// routes only), or empty when nothing matched.
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			if err != nil {
				// Written here, through the one error handler, so the
				// status counted is the one sent (accessLog, outside, then
				// sees no error).
				c.Error(err)
				err = nil
			}
			status := c.Response().Status
			if clientGone(c) {
				status = StatusClientClosedRequest
			}
			m.requests.WithLabelValues(listener, route, methodLabel(c.Request().Method), statusClass(status)).Inc()
			m.duration.WithLabelValues(listener, route).Observe(time.Since(start).Seconds())
			return err
		}
	}
}

func (m *Metrics) handler() echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
}
