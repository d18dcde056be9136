package grants

// Grant types, as clients send them in grant_type.
const (
	// WeChatCode is the grant a mini-program uses to trade its wx.login()
	// code for tokens (wxidp's extension grant).
	WeChatCode        = "urn:wxidp:params:oauth:grant-type:wechat-code"
	ClientCredentials = "client_credentials"
	RefreshToken      = "refresh_token"
)

// Supported lists the grants wxidp serves, in discovery order; a fresh
// slice, so callers may keep or change it.
func Supported() []string {
	return []string{WeChatCode, ClientCredentials, RefreshToken}
}
