package grants

// Grant types, as clients send them in grant_type.
const (
	// WeChatCode is the grant a mini-program uses to trade its wx.login()
	// code for tokens (wxidp's extension grant).
	WeChatCode        = "urn:wxidp:params:oauth:grant-type:wechat-code"
	ClientCredentials = "client_credentials"
	RefreshToken      = "refresh_token"
	// AuthorizationCode is the grant of scan-to-login: a website trades
	// the code the authorization endpoint issued (with PKCE) for tokens.
	AuthorizationCode = "authorization_code"
)

// Supported lists the grants wxidp serves, in discovery order; a fresh
// slice, so callers may keep or change it.
func Supported() []string {
	return []string{WeChatCode, AuthorizationCode, ClientCredentials, RefreshToken}
}
