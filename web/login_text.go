package web

import (
	"golang.org/x/text/language"
)

// The login pages speak Chinese or English, whichever the browser's
// Accept-Language prefers (English when it names neither).

// pageText is every sentence a login page shows.
type pageText struct {
	Lang, Title, LoginTo, ScanHint, QRAlt                        string
	Waiting, Scanned, Approved, Denied, Expired, Failed, Unreach string
	NewCode, Continue                                            string
	ErrorTitle, StartAgain                                       string
	ScanPageTitle, ScanPageBody                                  string
	LogoutTitle, LogoutAsk, LogoutButton, LoggedOut              string
	TooMany                                                      string
}

var texts = map[string]pageText{
	"en": {
		Lang: "en", Title: "Log in with WeChat", LoginTo: "Log in to", ScanHint: "Scan the code with WeChat, then confirm in the mini-program.",
		QRAlt:    "Login code: scan it with WeChat",
		Waiting:  "Waiting for you to scan the code…",
		Scanned:  "Scanned. Confirm the login on your phone.",
		Approved: "Approved. Logging you in…",
		Denied:   "The login was denied on the phone.",
		Expired:  "This code has expired.",
		Failed:   "The code could not be loaded.",
		Unreach:  "The server cannot be reached right now; still trying…",
		NewCode:  "Get a new code", Continue: "Continue",
		ErrorTitle: "The login cannot continue", StartAgain: "Go back to the website and start the login again.",
		ScanPageTitle: "Scan with the mini-program", ScanPageBody: "This code logs you in on a computer. Open the mini-program in WeChat and scan the code with it.",
		LogoutTitle: "Log out", LogoutAsk: "Do you want to log out of this browser?", LogoutButton: "Log out", LoggedOut: "You are logged out.",
		TooMany: "Too many logins were started from your network. Wait a moment, then try again.",
	},
	"zh": {
		Lang: "zh-CN", Title: "微信扫码登录", LoginTo: "登录到", ScanHint: "请使用微信扫描二维码，然后在小程序中确认。",
		QRAlt:    "登录二维码：请用微信扫描",
		Waiting:  "等待扫码…",
		Scanned:  "已扫码，请在手机上确认登录。",
		Approved: "已确认，正在登录…",
		Denied:   "已在手机上拒绝登录。",
		Expired:  "二维码已过期。",
		Failed:   "二维码加载失败。",
		Unreach:  "暂时无法连接服务器，正在重试…",
		NewCode:  "刷新二维码", Continue: "继续",
		ErrorTitle: "无法继续登录", StartAgain: "请返回网站重新发起登录。",
		ScanPageTitle: "请使用小程序扫码", ScanPageBody: "此二维码用于在电脑上登录。请在微信中打开小程序，并用小程序扫描此二维码。",
		LogoutTitle: "退出登录", LogoutAsk: "要在此浏览器上退出登录吗？", LogoutButton: "退出登录", LoggedOut: "您已退出登录。",
		TooMany: "您所在的网络发起的登录过多，请稍后再试。",
	},
}

var langMatcher = language.NewMatcher([]language.Tag{language.English, language.Chinese})

// textFor picks the page language from an Accept-Language header.
func textFor(acceptLanguage string) pageText {
	tags, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil || len(tags) == 0 {
		return texts["en"]
	}
	_, i, conf := langMatcher.Match(tags...)
	if i == 1 && conf != language.No {
		return texts["zh"]
	}
	return texts["en"]
}
