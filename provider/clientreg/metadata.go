package clientreg

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/storage"
)

// ErrInvalidMetadata wraps every rejection of client metadata; its message
// names the offending field (RFC 7591 invalid_client_metadata).
var ErrInvalidMetadata = errors.New("invalid client metadata")

// Metadata is a registration request (RFC 7591 names).
type Metadata struct {
	ClientID                string
	ClientSecret            string // optional; generated when empty
	ClientName              string
	GrantTypes              []string
	Scope                   string // space separated
	Audience                []string
	RedirectURIs            []string
	TokenEndpointAuthMethod string
	WeChatAppID             string
	WeChatAppSecret         string // write-only
	AllowedCORSOrigins      []string
	PostLogoutRedirectURIs  []string
	WeChatLoginPage         string
	// The client's own lifetimes in seconds (0: the server's), each at
	// most the server's (Registry.LimitLifetimes).
	AccessTokenTTLSeconds  int64
	RefreshTokenTTLSeconds int64
	SessionMaxAgeSeconds   int64
}

var (
	wechatAppIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	clientIDPattern    = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)
	scopePattern       = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,128}$`) // RFC 6749 scope-token
	authMethods        = []string{"client_secret_basic", "client_secret_post", "none"}
	// wechatPagePattern is a mini-program page path as wxacode.getUnlimited
	// takes it: slash-separated segments, no leading slash, no query.
	wechatPagePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$`)
)

// maxWeChatPageLen bounds wechat_login_page (WeChat's own limit on a page
// path is not documented; real ones are a few dozen bytes).
const maxWeChatPageLen = 128

// build validates md into a record; old is the record being replaced.
func (cs *Registry) build(ctx context.Context, md Metadata, old *storage.Client) (*storage.Client, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidMetadata}, a...)...)
	}
	if !clientIDPattern.MatchString(md.ClientID) {
		return nil, bad("client_id must be 1-128 characters of A-Z a-z 0-9 . _ ~ -")
	}
	if len(md.ClientName) > 256 {
		return nil, bad("client_name is longer than 256 characters")
	}
	if md.TokenEndpointAuthMethod == "" {
		md.TokenEndpointAuthMethod = "client_secret_basic"
	}
	if !slices.Contains(authMethods, md.TokenEndpointAuthMethod) {
		return nil, bad("token_endpoint_auth_method %q is not supported (supported: %s)", md.TokenEndpointAuthMethod, strings.Join(authMethods, ", "))
	}
	public := md.TokenEndpointAuthMethod == "none"
	if len(md.GrantTypes) == 0 {
		md.GrantTypes = []string{grants.ClientCredentials}
		if public {
			md.GrantTypes = []string{grants.WeChatCode, grants.RefreshToken}
		}
	}
	for _, g := range md.GrantTypes {
		if supported := grants.Supported(); !slices.Contains(supported, g) {
			return nil, bad("grant_types: %q is not supported (supported: %s)", g, strings.Join(supported, ", "))
		}
		if public && g == grants.ClientCredentials {
			return nil, bad("grant_types: a public client (token_endpoint_auth_method none) cannot use client_credentials")
		}
		if !public && g == grants.WeChatCode {
			return nil, bad("grant_types: the WeChat-code grant is for public mini-program clients (token_endpoint_auth_method none)")
		}
	}
	// A mini-program client is public and bound to exactly one appid. A
	// scan-to-login website (the authorization code grant) may name the
	// mini-program whose code its login page shows; a public one (a
	// single-page or native app) need not. Other confidential clients have
	// no WeChat binding.
	authCode := slices.Contains(md.GrantTypes, grants.AuthorizationCode)
	if public && md.WeChatAppID == "" && slices.Contains(md.GrantTypes, grants.WeChatCode) {
		return nil, bad("wechat_appid is required for a public client of the WeChat-code grant (token_endpoint_auth_method none)")
	}
	// The authorization endpoint redirects only to a registered URI: a
	// client without one could never receive a code.
	if authCode && len(md.RedirectURIs) == 0 {
		return nil, bad("redirect_uris: the authorization_code grant needs at least one redirect URI")
	}
	if !public && !authCode && (md.WeChatAppID != "" || md.WeChatAppSecret != "") {
		return nil, bad("wechat_appid and wechat_app_secret belong to public clients (token_endpoint_auth_method none) " +
			"and to clients of the authorization_code grant")
	}
	if public && md.ClientSecret != "" {
		return nil, bad("client_secret: a public client has no secret")
	}
	if md.WeChatAppID != "" && !wechatAppIDPattern.MatchString(md.WeChatAppID) {
		return nil, bad("wechat_appid %q is not a WeChat appid", md.WeChatAppID)
	}
	if len(md.WeChatAppSecret) > 128 {
		return nil, bad("wechat_app_secret is too long")
	}
	scopes := strings.Fields(md.Scope)
	for _, s := range scopes {
		if !scopePattern.MatchString(s) {
			return nil, bad("scope: %q is not a valid scope token", s)
		}
	}
	for _, a := range md.Audience {
		if a == "" || len(a) > 512 || strings.ContainsAny(a, " \t\r\n") {
			return nil, bad("audience: %q is not a valid audience", a)
		}
	}
	// Redirect URIs are stored exactly as given (no normalisation): the
	// authorization endpoint compares them by exact string equality, so the
	// check below refuses any URI that has more than one spelling.
	for _, u := range md.RedirectURIs {
		if err := ValidateRedirectURI(u); err != nil {
			return nil, err
		}
	}
	// Logout targets follow the same rules: RP-initiated logout compares
	// them by exact string equality as well.
	for _, u := range md.PostLogoutRedirectURIs {
		if err := validateURI("post_logout_redirect_uris", u); err != nil {
			return nil, err
		}
	}
	if err := checkWeChatLoginPage(md.WeChatLoginPage, md.WeChatAppID); err != nil {
		return nil, err
	}
	// Origins, like redirect URIs, are stored as given: the CORS check
	// compares them with the Origin header byte for byte.
	if err := checkCORSOrigins(md.AllowedCORSOrigins); err != nil {
		return nil, err
	}
	if md.ClientSecret != "" {
		if err := CheckSecret(md.ClientSecret); err != nil {
			return nil, bad("client_secret must be at least %d characters", MinSecretLen)
		}
	}
	if md.WeChatAppSecret != "" && md.WeChatAppID == "" {
		return nil, bad("wechat_app_secret needs wechat_appid")
	}
	lifetimes, err := cs.lifetimes(md)
	if err != nil {
		return nil, err
	}
	c := &storage.Client{
		ID:                      md.ClientID,
		Name:                    md.ClientName,
		GrantTypes:              dedupe(md.GrantTypes),
		Scopes:                  dedupe(scopes),
		Audience:                dedupe(md.Audience),
		RedirectURIs:            dedupe(md.RedirectURIs),
		AllowedCORSOrigins:      dedupe(md.AllowedCORSOrigins),
		PostLogoutRedirectURIs:  dedupe(md.PostLogoutRedirectURIs),
		TokenEndpointAuthMethod: md.TokenEndpointAuthMethod,
		WeChatAppID:             md.WeChatAppID,
		WeChatLoginPage:         md.WeChatLoginPage,
		AccessTokenTTL:          lifetimes[0],
		RefreshTokenTTL:         lifetimes[1],
		SessionMaxAge:           lifetimes[2],
	}
	if old != nil {
		c.SecretHash = old.SecretHash
		c.WeChatAppSecret = old.WeChatAppSecret
		c.CreatedAt = old.CreatedAt
		if old.WeChatAppID != md.WeChatAppID {
			c.WeChatAppSecret = nil // a secret belongs to its appid
		}
	}
	if md.ClientSecret != "" {
		h, err := cs.hasher.Hash(ctx, []byte(md.ClientSecret))
		if err != nil {
			return nil, err
		}
		c.SecretHash = h
	}
	if public {
		c.SecretHash = nil
	} else if len(c.SecretHash) == 0 {
		return nil, bad("client_secret is required to make a client confidential")
	}
	if md.WeChatAppSecret != "" {
		sealed, err := cs.sealer.Seal([]byte(md.WeChatAppSecret), storage.SealedAppSecret.AAD(md.WeChatAppID))
		if err != nil {
			return nil, err
		}
		c.WeChatAppSecret = sealed
	}
	// Every WeChat binding calls WeChat: code2session for a mini-program,
	// the mini-program code API for a scan-to-login website.
	if c.WeChatAppID != "" && len(c.WeChatAppSecret) == 0 {
		return nil, bad("wechat_app_secret is required with wechat_appid")
	}
	return c, nil
}

// checkWeChatLoginPage accepts an empty page (the app's home) or a page
// path of the mini-program appID, which a scan-to-login QR code opens.
func checkWeChatLoginPage(page, appID string) error {
	if page == "" {
		return nil
	}
	if appID == "" {
		return fmt.Errorf("%w: wechat_login_page needs wechat_appid (it is a page of that mini-program)", ErrInvalidMetadata)
	}
	if len(page) > maxWeChatPageLen || !wechatPagePattern.MatchString(page) {
		return fmt.Errorf("%w: wechat_login_page %q is not a mini-program page path such as pages/scan/index "+
			"(at most %d bytes of A-Z a-z 0-9 _ - in segments separated by /, no leading slash)", ErrInvalidMetadata, page, maxWeChatPageLen)
	}
	return nil
}

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Lifetimes are the server's token lifetimes: a client may register
// shorter ones, never longer.
type Lifetimes struct {
	AccessToken, RefreshToken, SessionMaxAge time.Duration
}

// maxLifetime bounds a client lifetime when the registry has no server
// limits (tests): ten years, so the seconds fit any integer column.
const maxLifetime = 10 * 365 * 24 * time.Hour

// lifetimes checks the client's own lifetimes against the server's and
// returns them as durations (access, refresh, session).
func (cs *Registry) lifetimes(md Metadata) ([3]time.Duration, error) {
	var out [3]time.Duration
	for i, f := range []struct {
		name  string
		secs  int64
		limit time.Duration
		what  string
	}{
		{"access_token_ttl_seconds", md.AccessTokenTTLSeconds, cs.limits.AccessToken, "WXIDP_ACCESS_TOKEN_TTL"},
		{"refresh_token_ttl_seconds", md.RefreshTokenTTLSeconds, cs.limits.RefreshToken, "WXIDP_REFRESH_TOKEN_TTL"},
		{"session_max_age_seconds", md.SessionMaxAgeSeconds, cs.limits.SessionMaxAge, "WXIDP_SESSION_MAX_AGE"},
	} {
		limit := f.limit
		if limit <= 0 {
			limit = maxLifetime
		}
		if f.secs < 0 || f.secs > int64(limit/time.Second) {
			return out, fmt.Errorf("%w: %s must be from 0 (the server's) to %d, the server's %s",
				ErrInvalidMetadata, f.name, int64(limit/time.Second), f.what)
		}
		out[i] = time.Duration(f.secs) * time.Second
	}
	return out, nil
}
