package wechattest

import (
	"net/http/httptest"
	"testing"

	"github.com/wxidp/wxidp/provider/wechat/wechatfake"
)

// The fake's paths, for FailNext and Calls, re-exported so that a test needs
// only this package.
const (
	PathCode2Session = wechatfake.PathCode2Session
	PathStableToken  = wechatfake.PathStableToken
	PathPhoneNumber  = wechatfake.PathPhoneNumber
	PathWXACode      = wechatfake.PathWXACode
	PathCheckSession = wechatfake.PathCheckSession
)

// Server is a Fake listening on a local httptest.Server. Its URL is the base
// URL to give wechat.New; Close (or the end of the test) stops it, which tests
// use to make WeChat unreachable.
type Server struct {
	*wechatfake.Fake
	*httptest.Server
}

// NewServer starts a Fake on a local port and closes it when t ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	f := wechatfake.New()
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	return &Server{Fake: f, Server: ts}
}
