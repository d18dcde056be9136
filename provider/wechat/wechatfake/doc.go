// Package wechatfake is a fake WeChat API, faithful to the real one in the
// ways wxidp depends on, for `wxidp serve --dev` and, through wechattest, for
// tests. It imports no test packages, so the binary can link it.
//
// Fake is an http.Handler holding all state; serve it anywhere and point
// wechat.New (WXIDP_WECHAT_API_BASE) at it:
//
//	f := wechatfake.New()
//	f.AddApp("wx123", "secret")
//	code := f.Login("wx123", "openid-1", "")    // what wx.login would return
//	c, _ := wechat.New(baseURLWhereFIsServed)
//	s, err := c.Code2Session(ctx, "wx123", "secret", code)
//
// Like the real API it answers every refusal with HTTP 200 and
// {"errcode":N,"errmsg":"..., rid: ..."}; login and phone codes are single
// use and live 5 minutes; stable_token returns the same token until it
// expires unless force_refresh is set, which also invalidates the old one.
//
// Tests program it with FailNext (queue errcodes such as -1, 40226, 45011),
// SetDelay (a slow WeChat: a request whose client gave up is still processed
// and its code consumed, as on the real one), SetNow (the clock), ExpireToken
// and Calls. All methods are safe for concurrent use.
//
// getwxacodeunlimit checks the access token like getuserphonenumber, the
// scene (40129), env_version (40097) and page against the app's published
// pages (41030; SetPublishedPages, DefaultPages otherwise). The real API
// answers with a round "sun code" that only WeChat can read; the fake
// answers with a PNG QR code holding exactly the scene, so tests (and a
// developer's phone) can read it. WXACodes lists the codes drawn.
//
// For curl users in dev mode two extra endpoints stand in for the phone:
//
//	POST /_fake/login      appid, openid[, unionid]  -> {"code":"..."}
//	POST /_fake/phonecode  appid, phone              -> {"code":"..."}
//	POST /_fake/sessionkey appid, openid             -> {"session_key":"..."}
//
// (form or JSON bodies). They are not part of WeChat's API.
package wechatfake
