package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// adminWithHeaders sends one admin request with extra headers and returns
// the status, the ETag and the decoded body.
func adminWithHeaders(t *testing.T, srv *server, method, path string, body any, h map[string]string) (int, string, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, srv.admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header.Get("ETag"), m
}

// TestAdminClientIfMatch: a PUT carrying the ETag of an older read is
// refused with 412 and changes nothing; the current ETag applies; every
// answer about a client carries its ETag, and a changed client a new one.
func TestAdminClientIfMatch(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	srv.registerClient(t, map[string]any{"client_id": "svc", "client_name": "Svc", "scope": "read",
		"client_secret": strings.Repeat("s", 40)})
	status, etag, _ := adminWithHeaders(t, srv, "GET", "/admin/clients/svc", nil, nil)
	if status != 200 || !strings.HasPrefix(etag, `"`) {
		t.Fatalf("GET: %d, ETag %q", status, etag)
	}
	status, etag2, body := adminWithHeaders(t, srv, "PUT", "/admin/clients/svc",
		map[string]any{"client_name": "First", "scope": "read"}, map[string]string{"If-Match": etag})
	if status != 200 || etag2 == "" || etag2 == etag {
		t.Fatalf("PUT with the current ETag: %d %v, ETag %q (was %q)", status, body, etag2, etag)
	}
	for name, ifMatch := range map[string]string{
		"stale": etag, "weak": "W/" + etag2, "garbage": "nonsense", "unquoted": strings.Trim(etag2, `"`),
		"list": etag2 + ", " + etag, "negative": `"-1"`,
	} {
		status, _, body := adminWithHeaders(t, srv, "PUT", "/admin/clients/svc",
			map[string]any{"client_name": "Lost", "scope": "read write"}, map[string]string{"If-Match": ifMatch})
		if status != http.StatusPreconditionFailed || body["error"] != "precondition_failed" {
			t.Errorf("PUT with %s If-Match %q: %d %v, want 412 precondition_failed", name, ifMatch, status, body)
		}
	}
	_, etag3, got := adminWithHeaders(t, srv, "GET", "/admin/clients/svc", nil, nil)
	if got["client_name"] != "First" || got["scope"] != "read" || etag3 != etag2 {
		t.Fatalf("a refused PUT changed the client: %v, ETag %q want %q", got, etag3, etag2)
	}
	// Unconditional PUTs (no header, or *) still apply, as before.
	for _, h := range []map[string]string{nil, {"If-Match": "*"}} {
		if status, _, body := adminWithHeaders(t, srv, "PUT", "/admin/clients/svc",
			map[string]any{"client_name": "Plain", "scope": "read"}, h); status != 200 {
			t.Errorf("PUT with %v: %d %v", h, status, body)
		}
	}
	if status, _, body := adminWithHeaders(t, srv, "PUT", "/admin/clients/none",
		map[string]any{"client_name": "X"}, map[string]string{"If-Match": etag}); status != 404 {
		t.Errorf("conditional PUT of an unknown client: %d %v, want 404", status, body)
	}
}

// TestClientsCLIUpdateLostUpdate: when another admin changes the client
// between the CLI's GET and its PUT, `clients update` fails (412) instead
// of writing back the fields it read, and the other change survives.
func TestClientsCLIUpdateLostUpdate(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig(migratedDB(t)))
	srv.registerClient(t, map[string]any{"client_id": "svc", "client_name": "Svc", "scope": "read",
		"client_secret": strings.Repeat("s", 40)})
	target, err := url.Parse(srv.admin)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	var once sync.Once
	// The proxy lets the other admin's change in just before the CLI's PUT.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			once.Do(func() {
				if status, _, body := adminWithHeaders(t, srv, "PUT", "/admin/clients/svc",
					map[string]any{"client_name": "Svc", "scope": "read write"}, nil); status != 200 {
					t.Errorf("the concurrent change: %d %v", status, body)
				}
			})
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	via := *srv
	via.admin = proxy.URL
	out, err := runClients(t, &via, "", "update", "svc", "--name", "Renamed")
	if err == nil || !strings.Contains(err.Error(), "412") {
		t.Fatalf("update over a concurrent change: %v\n%s; want a 412 error", err, out)
	}
	_, got := srv.adminJSON(t, "GET", "/admin/clients/svc", testAdminToken, nil)
	if got["scope"] != "read write" || got["client_name"] != "Svc" {
		t.Fatalf("the concurrent change was reverted or the stale one applied: %v", got)
	}
	// Run again, it applies to the current client and keeps the other change.
	if out, err := runClients(t, srv, "", "update", "svc", "--name", "Renamed"); err != nil {
		t.Fatalf("second update: %v\n%s", err, out)
	}
	_, got = srv.adminJSON(t, "GET", "/admin/clients/svc", testAdminToken, nil)
	if got["scope"] != "read write" || got["client_name"] != "Renamed" {
		t.Fatalf("after the second update: %v", got)
	}
}
