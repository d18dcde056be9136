// Package wechattest starts the fake WeChat API of package wechatfake for
// tests. It imports testing and net/http/httptest, so only _test.go files
// may import it; `wxidp serve --dev` uses wechatfake directly (.ci/run
// checks that no binary links a test package).
//
// NewServer serves a wechatfake.Fake on an httptest.Server closed when the
// test ends:
//
//	srv := wechattest.NewServer(t)
//	srv.AddApp("wx123", "secret")
//	code := srv.Login("wx123", "openid-1", "")    // what wx.login would return
//	c, _ := wechat.New(srv.URL)
//	s, err := c.Code2Session(ctx, "wx123", "secret", code)
//
// See wechatfake for what the fake does and how tests program it.
package wechattest
