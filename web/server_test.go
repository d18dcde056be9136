package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/ory/fosite"
)

// logLines parses slog JSON output.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func noMetrics(next echo.HandlerFunc) echo.HandlerFunc { return next }

// TestClientGoneIsNotAServerError: a handler failing because its client
// hung up (the request context is canceled) is logged once, as 499 at
// INFO, with no ERROR and no answer written.
func TestClientGoneIsNotAServerError(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	e := newEcho(slog.New(slog.NewJSONHandler(&buf, nil)), false, noMetrics)
	e.GET("/slow", func(c echo.Context) error {
		<-c.Request().Context().Done()
		return fmt.Errorf("query: %w", c.Request().Context().Err())
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is already gone
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/slow", nil).WithContext(ctx))
	if rec.Body.Len() != 0 {
		t.Errorf("answered a departed client: %d %s", rec.Code, rec.Body)
	}
	lines := logLines(t, &buf)
	if len(lines) != 1 {
		t.Fatalf("want one access-log line, got %v", lines)
	}
	if l := lines[0]; l["level"] != "INFO" || l["msg"] != "request" || l["status"] != float64(StatusClientClosedRequest) {
		t.Errorf("access log %v, want INFO request status 499", l)
	}
}

func TestRequestIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	e := newEcho(slog.New(slog.NewJSONHandler(&buf, nil)), false, noMetrics)
	e.GET("/", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	for _, tc := range []struct {
		sent string
		kept bool
	}{
		{"abc-DEF_0.9", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"has space", false},
		{"<script>", false},
		{`a"b`, false},
		{"é", false},
		{"a\nb", false},
	} {
		buf.Reset()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set(echo.HeaderXRequestID, tc.sent)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		got := rec.Header().Get(echo.HeaderXRequestID)
		if tc.kept && got != tc.sent {
			t.Errorf("%q: replaced by %q", tc.sent, got)
		}
		if !tc.kept && (got == tc.sent || !plainName(got)) {
			t.Errorf("%q: answered %q", tc.sent, got)
		}
		if l := logLines(t, &buf); len(l) != 1 || l[0]["request_id"] != got {
			t.Errorf("%q: logged %v, answered %q", tc.sent, l, got)
		}
	}
}

// TestRetryAfterOn503: every 503, whether written by the error handler or
// as an OAuth error, says when to retry; a Retry-After already set stays.
func TestRetryAfterOn503(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	e := newEcho(log, false, noMetrics)
	e.GET("/down", func(c echo.Context) error {
		return newAPIError(http.StatusServiceUnavailable, "temporarily_unavailable", "Retry later.")
	})
	e.GET("/own", func(c echo.Context) error {
		c.Response().Header().Set(retryAfter, "30")
		return newAPIError(http.StatusServiceUnavailable, "temporarily_unavailable", "Retry later.")
	})
	e.GET("/echo503", func(c echo.Context) error { return echo.NewHTTPError(http.StatusServiceUnavailable) })
	for path, want := range map[string]string{"/down": retryAfterUnavailable, "/own": "30", "/echo503": retryAfterUnavailable} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get(retryAfter) != want {
			t.Errorf("%s: %d Retry-After %q, want 503 %q", path, rec.Code, rec.Header().Get(retryAfter), want)
		}
	}

	p := &public{PublicConfig: PublicConfig{Log: log}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fosite.ErrTemporarilyUnavailable.WithHint("WeChat is busy."), retryAfterUnavailable},
		{&fosite.RFC6749Error{ErrorField: "temporarily_unavailable", CodeField: http.StatusTooManyRequests}, "60"},
		{fosite.ErrInvalidGrant, ""},
	} {
		rec := httptest.NewRecorder()
		c := e.NewContext(httptest.NewRequest(http.MethodPost, "/oauth2/token", nil), rec)
		if !p.oauthError(c, "test", tc.err) {
			t.Fatal("oauthError: client reported gone")
		}
		if got := rec.Header().Get(retryAfter); got != tc.want {
			t.Errorf("%v: Retry-After %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestSingleParams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		query, body string
		repeated    string // "" means accepted
	}{
		{"", "grant_type=client_credentials&scope=a+b", ""},
		{"x=1", "grant_type=client_credentials", ""},
		{"", "code=a&code=a", "'code'"},
		{"", "scope=a&scope=b", "'scope'"},
		{"client_id=a", "client_id=a", "'client_id'"},
		{"token=a&token=b", "", "'token'"},
		{"", "a%20b=1&a%20b=2", "A request parameter"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/oauth2/token?"+tc.query, strings.NewReader(tc.body))
		r.Header.Set(echo.HeaderContentType, echo.MIMEApplicationForm)
		err := singleParams(r)
		if tc.repeated == "" {
			if err != nil {
				t.Errorf("%q %q: %v", tc.query, tc.body, err)
			}
			continue
		}
		rfc := fosite.ErrorToRFC6749Error(err)
		if !errors.Is(err, fosite.ErrInvalidRequest) || !strings.Contains(rfc.GetDescription(), tc.repeated) {
			t.Errorf("%q %q: %v (%s), want invalid_request naming %s", tc.query, tc.body, err, rfc.GetDescription(), tc.repeated)
		}
	}

	// Multipart bodies, which fosite also accepts, are checked too.
	var body bytes.Buffer
	body.WriteString("--b\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\na\r\n" +
		"--b\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\nb\r\n--b--\r\n")
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", &body)
	r.Header.Set(echo.HeaderContentType, "multipart/form-data; boundary=b")
	if err := singleParams(r); !errors.Is(err, fosite.ErrInvalidRequest) {
		t.Errorf("multipart: %v", err)
	}
}
