package provider

// Scopes with a meaning to wxidp's flows and its userinfo endpoint.
const (
	ScopeOpenID        = "openid"
	ScopeOfflineAccess = "offline_access"
	ScopeProfile       = "profile"
	ScopePhone         = "phone"
)
