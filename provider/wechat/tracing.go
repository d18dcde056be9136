package wechat

import (
	"context"
	"net/http"
	"net/url"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// WithTracerProvider makes every request to WeChat a client span of tp
// (default: none), a child of the span in the call's context. The URL the
// span records has the values of every query parameter but appid and
// grant_type replaced: the others are the app secret, the user's js_code
// and the app's access_token. No trace header is sent to WeChat.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Client) {
		if tp != nil {
			c.traced = func(rt http.RoundTripper) http.RoundTripper { return tracedTransport(rt, tp) }
		}
	}
}

// tracedTransport wraps rt in the spans of tp.
func tracedTransport(rt http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	// otelhttp records url.full from the request it is given, and spans
	// cannot drop an attribute once set: so it is given a redacted copy,
	// and the real URL is put back right below it, before sending.
	return redactURL{otelhttp.NewTransport(restoreURL{rt},
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return "wechat " + r.Method + " " + r.URL.Path // WeChat's fixed API paths
		}),
	)}
}

// shownParams are the query parameters whose values spans may show.
var shownParams = map[string]bool{"appid": true, "grant_type": true}

// realURLKey carries the unredacted URL from redactURL to restoreURL.
type realURLKey struct{}

// redactURL hands next a copy of the request whose URL shows only the
// values of shownParams.
type redactURL struct{ next http.RoundTripper }

func (t redactURL) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.RawQuery == "" {
		return t.next.RoundTrip(r)
	}
	shown := *r.URL
	shown.RawQuery = redactQuery(r.URL.Query())
	// A shallow copy, as http.Request.WithContext makes: the body stays
	// the one once set up, unreplayable (see Client.once).
	rr := r.WithContext(context.WithValue(r.Context(), realURLKey{}, r.URL))
	rr.URL = &shown
	return t.next.RoundTrip(rr)
}

func redactQuery(q url.Values) string {
	for k, vs := range q {
		if !shownParams[k] {
			for i := range vs {
				vs[i] = "REDACTED"
			}
		}
	}
	return q.Encode()
}

// restoreURL puts back the URL redactURL hid, below the span.
type restoreURL struct{ next http.RoundTripper }

func (t restoreURL) RoundTrip(r *http.Request) (*http.Response, error) {
	if u, ok := r.Context().Value(realURLKey{}).(*url.URL); ok {
		r = r.WithContext(r.Context()) // a copy: RoundTrip must not modify its request
		r.URL = u
	}
	return t.next.RoundTrip(r)
}
