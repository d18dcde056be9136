package wechat

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// sentRequests records what the transport under the spans sends.
type sentRequests struct {
	mu   sync.Mutex
	urls []string
	hdrs []http.Header
}

func (s *sentRequests) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.urls = append(s.urls, r.URL.String())
	s.hdrs = append(s.hdrs, r.Header.Clone())
	s.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// Each call is a client span, child of the caller's span, whose URL shows
// no secret, js_code or access_token; WeChat still gets the real values and
// no trace header.
func TestTracingRedactsURL(t *testing.T) {
	t.Parallel()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	sent := &sentRequests{}
	srv, c := setup(t, WithTracerProvider(tp), WithHTTPClient(&http.Client{Transport: sent}))

	ctx, parent := tp.Tracer("test").Start(t.Context(), "login")
	code := srv.Login(testApp, "o-traced", "")
	sess, err := c.Code2Session(ctx, testApp, testSecret, code)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.StableToken(ctx, testApp, testSecret, false)
	if err != nil {
		t.Fatal(err)
	}
	phoneCode := srv.PhoneCode(testApp, "13800138000")
	if _, err := c.PhoneNumber(ctx, tok.Token, phoneCode); err != nil {
		t.Fatal(err)
	}
	parent.End()

	secrets := []string{testSecret, code, sess.SessionKey, tok.Token, phoneCode}
	want := map[string]bool{
		"wechat GET " + wechattest.PathCode2Session: true, "wechat POST " + wechattest.PathStableToken: true,
		"wechat POST " + wechattest.PathPhoneNumber: true,
	}
	spans := sr.Ended()
	for _, s := range spans {
		if s.Name() == "login" {
			continue
		}
		if !want[s.Name()] {
			t.Errorf("unexpected span %q", s.Name())
		}
		delete(want, s.Name())
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %q is not a child of the caller's span", s.Name())
		}
		for _, a := range s.Attributes() {
			v := a.Value.String()
			for _, sec := range secrets {
				if strings.Contains(v, sec) {
					t.Errorf("span %q attribute %s holds a secret: %s", s.Name(), a.Key, v)
				}
			}
			if a.Key == "url.full" {
				u, err := url.Parse(v)
				if err != nil {
					t.Fatal(err)
				}
				for k, vs := range u.Query() {
					if k != "appid" && k != "grant_type" && (len(vs) != 1 || vs[0] != "REDACTED") {
						t.Errorf("span %q shows query parameter %s=%v", s.Name(), k, vs)
					}
				}
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("missing spans: %v (got %d spans)", want, len(spans))
	}

	sent.mu.Lock()
	defer sent.mu.Unlock()
	if !strings.Contains(sent.urls[0], "secret="+testSecret) || !strings.Contains(sent.urls[2], "access_token="+url.QueryEscape(tok.Token)) {
		t.Errorf("WeChat did not get the real query: %v", sent.urls)
	}
	for _, h := range sent.hdrs {
		if h.Get("Traceparent") != "" {
			t.Errorf("trace header sent to WeChat: %v", h)
		}
	}
}
