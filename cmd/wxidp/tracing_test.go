package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// postLogin sends a WeChat-code grant with the given extra headers and
// returns the status and the decoded body.
func (e *wechatEnv) postLogin(t *testing.T, form url.Values, headers map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.issuer+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return decodeDo(t, req)
}

// A traced WeChat login is one trace, continuing the caller's traceparent:
// the token endpoint's server span (named by route, with the request ID),
// the database statements and the WeChat calls under it. No span of any
// trace holds the app secret, the code, the session_key or a token.
func TestTracingWeChatLogin(t *testing.T) {
	t.Parallel()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	e := newWeChatEnv(t, func(c *serveConfig) { c.tracer = tp })
	e.miniProgram(t, "mp", "wxapp1")

	const traceID, rid = "4bf92f3577b34da6a3ce929d0e0e4736", "rid-traced-login"
	code := e.wx.Login("wxapp1", "o-traced", "")
	phoneCode := e.wx.PhoneCode("wxapp1", "13800138000")
	status, body := e.postLogin(t, url.Values{
		"grant_type": {grants.WeChatCode}, "client_id": {"mp"}, "code": {code},
		"scope": {"openid offline_access phone"}, "phone_code": {phoneCode},
	}, map[string]string{"Traceparent": "00-" + traceID + "-00f067aa0ba902b7-01", "X-Request-Id": rid})
	if status != http.StatusOK {
		t.Fatalf("login: %d %v", status, body)
	}
	secrets := []string{"secret-of-wxapp1", code, phoneCode, e.wx.SessionKey("wxapp1", "o-traced")}
	for _, k := range []string{"access_token", "refresh_token", "id_token"} {
		tok, _ := body[k].(string)
		if tok == "" {
			t.Fatalf("no %s in %v", k, body)
		}
		// A JWT's signature alone identifies it; refresh tokens are opaque.
		secrets = append(secrets, tok, tok[strings.LastIndex(tok, ".")+1:])
	}
	e.stop() // every request has ended, and so has its span

	var server sdktrace.ReadOnlySpan
	scopes := map[string]int{}
	for _, s := range sr.Ended() {
		checkSpanHoldsNoSecret(t, s, secrets)
		if s.SpanContext().TraceID().String() != traceID {
			continue
		}
		scopes[scopeOf(s.InstrumentationScope())]++
		if s.Name() == "POST /oauth2/token" {
			server = s
		}
	}
	if server == nil {
		t.Fatalf("no server span named by route in the caller's trace; scopes %v", scopes)
	}
	attrs := map[string]string{}
	for _, a := range server.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["wxidp.request_id"] != rid || attrs["http.route"] != "/oauth2/token" || attrs["http.response.status_code"] != "200" {
		t.Errorf("server span attributes: %v", attrs)
	}
	if scopes["wechat"] != 3 || scopes["db"] < 3 || scopes["http"] != 1 {
		t.Errorf("spans of the login's trace by kind: %v, want 1 http, 3 wechat (code2session, token, phone), db", scopes)
	}
}

// scopeOf classifies a span by the instrumentation that made it.
func scopeOf(s instrumentation.Scope) string {
	switch {
	case strings.Contains(s.Name, "otelpgx"):
		return "db"
	case strings.Contains(s.Name, "otelhttp"):
		return "wechat"
	case s.Name == "github.com/wxidp/wxidp/web":
		return "http"
	}
	return s.Name
}

func checkSpanHoldsNoSecret(t *testing.T, s sdktrace.ReadOnlySpan, secrets []string) {
	t.Helper()
	texts := []string{s.Name(), s.Status().Description}
	for _, a := range s.Attributes() {
		texts = append(texts, a.Value.String())
	}
	for _, ev := range s.Events() {
		for _, a := range ev.Attributes {
			texts = append(texts, a.Value.String())
		}
	}
	for _, txt := range texts {
		for _, sec := range secrets {
			if sec != "" && strings.Contains(txt, sec) {
				t.Errorf("span %q holds a secret: %s", s.Name(), txt)
			}
		}
	}
}

// A WeChat failure's log lines, the WeChat client's included, carry the
// request ID the caller sent.
func TestWeChatFailureLogsRequestID(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxapp1")
	e.wx.FailNext(wechattest.PathCode2Session, 40013) // invalid appid: our misconfiguration, logged
	const rid = "rid-wechat-failure"
	status, body := e.postLogin(t, url.Values{
		"grant_type": {grants.WeChatCode}, "client_id": {"mp"}, "code": {e.wx.Login("wxapp1", "o-x", "")},
	}, map[string]string{"X-Request-Id": rid})
	if status != http.StatusInternalServerError {
		t.Fatalf("login: %d %v", status, body)
	}
	want := map[string]bool{"wechat call failed": false, "wechat rejected the client's configuration": false}
	for _, line := range strings.Split(e.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		msg, _ := rec["msg"].(string)
		if _, ok := want[msg]; ok {
			if rec["request_id"] != rid {
				t.Errorf("log line without the request ID: %s", line)
			}
			want[msg] = true
		}
	}
	for msg, seen := range want {
		if !seen {
			t.Errorf("no %q log line in:\n%s", msg, e.logs.String())
		}
	}
}

// Without the OTEL_* endpoint variables, serve creates no exporter and
// instruments nothing; with one, it does; OTEL_SDK_DISABLED wins.
func TestTracingOffByDefault(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}, false},
	} {
		for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"} {
			t.Setenv(k, c.env[k])
		}
		tr, err := startTracing(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, sdk := tr.tp.(*sdktrace.TracerProvider)
		if on := tr.tp != nil; on != c.want || sdk != c.want || (tr.shutdown != nil) != c.want || (len(tr.db()) > 0) != c.want {
			t.Errorf("%v: tracing on = %v (sdk %v), want %v", c.env, on, sdk, c.want)
		}
		tr.close(quietLog()) // nothing was traced: nothing to send
	}
}

// A returning user's login and a refresh write through batches, which
// concurrent requests share (storage/postgres/batchqueue.go): each request's
// trace shows its wait for the batch, and a batch's statements appear under
// it in the trace of one of its requests, linked to all of them.
func TestTracingBatchedCalls(t *testing.T) {
	t.Parallel()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	e := newWeChatEnv(t, func(c *serveConfig) { c.tracer = tp })
	e.miniProgram(t, "mp", "wxapp1")
	login := func(traceparent string) map[string]any {
		status, body := e.postLogin(t, url.Values{
			"grant_type": {grants.WeChatCode}, "client_id": {"mp"}, "code": {e.wx.Login("wxapp1", "o-batched", "")},
			"scope": {"openid offline_access"},
		}, map[string]string{"Traceparent": traceparent})
		if status != http.StatusOK {
			t.Fatalf("login: %d %v", status, body)
		}
		return body
	}
	const loginTrace, refreshTrace = "5bf92f3577b34da6a3ce929d0e0e4736", "6bf92f3577b34da6a3ce929d0e0e4736"
	login("00-" + strings.Repeat("1", 32) + "-00f067aa0ba902b7-01") // the user's first login: a transaction
	tok := login("00-" + loginTrace + "-00f067aa0ba902b7-01")       // returning: batched
	status, body := e.postLogin(t, url.Values{
		"grant_type": {"refresh_token"}, "client_id": {"mp"}, "refresh_token": {tok["refresh_token"].(string)},
	}, map[string]string{"Traceparent": "00-" + refreshTrace + "-00f067aa0ba902b7-01"})
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, body)
	}
	e.stop()

	// A batch's span ends just after it answered its callers: wait for it.
	var problems []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		problems = batchedTraceProblems(sr.Ended(), map[string][]string{
			loginTrace:   {"claim wechat code", "returning user", "returning login"},
			refreshTrace: {"get refresh token", "rotate refresh token"},
		})
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// batchedTraceProblems checks that each trace of want holds a wait span
// for each of its batched calls, the batch's span under it, and statements
// under the batches.
func batchedTraceProblems(spans []sdktrace.ReadOnlySpan, want map[string][]string) []string {
	var problems []string
	for traceID, calls := range want {
		waits := map[string]trace.SpanID{}   // batched call -> the request's wait span
		batches := map[string]trace.SpanID{} // batched call -> the batch's span
		parents := map[trace.SpanID]trace.SpanID{}
		var statements []sdktrace.ReadOnlySpan
		for _, s := range spans {
			if s.SpanContext().TraceID().String() != traceID {
				continue
			}
			parents[s.SpanContext().SpanID()] = s.Parent().SpanID()
			if name, ok := strings.CutPrefix(s.Name(), "postgres batched "); ok {
				waits[name] = s.SpanContext().SpanID()
			}
			if name, ok := strings.CutPrefix(s.Name(), "postgres batch "); ok {
				batches[name] = s.SpanContext().SpanID()
				if len(s.Links()) != 1 || s.Links()[0].SpanContext.SpanID() != s.Parent().SpanID() {
					problems = append(problems, fmt.Sprintf("%s: batch span %q links %v, want its one caller's wait span", traceID, s.Name(), s.Links()))
				}
			}
			if scopeOf(s.InstrumentationScope()) == "db" {
				statements = append(statements, s)
			}
		}
		for _, c := range calls {
			if !waits[c].IsValid() || !batches[c].IsValid() || parents[batches[c]] != waits[c] {
				problems = append(problems, fmt.Sprintf("%s: batched call %q: wait span %v, batch span %v under %v", traceID, c, waits[c], batches[c], parents[batches[c]]))
			}
		}
		// Each batch ran its statements under its span (the request's own,
		// unbatched statements are under the request's spans).
		batched := 0
		for _, s := range statements {
			for _, id := range batches {
				if s.Parent().SpanID() == id {
					batched++
				}
			}
		}
		if batched < len(calls) {
			problems = append(problems, fmt.Sprintf("%s: %d statement spans under the batches, want one per batch at least (%d)", traceID, batched, len(calls)))
		}
	}
	return problems
}
