// Package wechat is a small client of the four WeChat server APIs wxidp
// needs: code2Session (trade a wx.login code for openid, unionid and
// session_key), getStableAccessToken, getPhoneNumber, and
// wxacode.getUnlimited (the mini-program code a user scans to log in on
// another screen).
//
// It is written around three facts of the real API that other client
// libraries got wrong:
//
//   - WeChat answers errors with HTTP 200 and a JSON {"errcode","errmsg"};
//     success is errcode absent or 0. Failures come back as *APIError, whose
//     Code is compared with the Code* constants.
//   - Login and phone codes are single use. A request WeChat may have
//     processed is never sent again, because the retry would only turn a
//     network error into "code been used" (40163). The client retries once,
//     and only when WeChat said it was busy (errcode -1) or when the
//     connection could not even be opened.
//   - Requests carry the app secret, js_code, access_token and phone code in
//     the URL or body. None of them ever appears in an error or a log line:
//     transport failures come back as *TransportError, which drops Go's
//     *url.Error (it embeds the full URL) and scrubs the remaining text.
//
// errors.Is(err, ErrUnavailable) reports failures worth a later retry
// (network, timeouts, HTTP 5xx, errcode -1, malformed answers);
// errors.Is(err, context.DeadlineExceeded) and context.Canceled keep working.
//
// Package wechatfake holds a fake WeChat server faithful to these rules, for
// `wxidp serve --dev`; package wechattest serves it to tests.
package wechat
