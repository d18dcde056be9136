package wechattest

import (
	"net/http/httptest"
	"testing"
)

// Server is a Fake listening on a local httptest.Server. Its URL is the base
// URL to give wechat.New; Close (or the end of the test) stops it, which tests
// use to make WeChat unreachable.
type Server struct {
	*Fake
	*httptest.Server
}

// NewServer starts a Fake on a local port and closes it when t ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	f := New()
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	return &Server{Fake: f, Server: ts}
}
