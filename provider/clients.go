package provider

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/wxidp/wxidp/storage"
)

// ErrInvalidMetadata wraps every rejection of client metadata; its message
// names the offending field (RFC 7591 invalid_client_metadata).
var ErrInvalidMetadata = errors.New("invalid client metadata")

// ClientStore is what client registration needs from storage.
type ClientStore interface {
	CreateClient(ctx context.Context, c *storage.Client) error
	LookupClient(ctx context.Context, id string) (*storage.Client, error)
	ListClients(ctx context.Context) ([]storage.Client, error)
	UpdateClient(ctx context.Context, c *storage.Client) error
	DeleteClient(ctx context.Context, id string) error
}

// Sealer encrypts secrets at rest (keys.Cipher).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
}

// ClientMetadata is a registration request (RFC 7591 names).
type ClientMetadata struct {
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
}

// Clients registers and manages clients: the rules behind the admin API.
type Clients struct {
	store  ClientStore
	hasher *SecretHasher
	sealer Sealer
}

// NewClients returns the client registry.
func NewClients(store ClientStore, hasher *SecretHasher, sealer Sealer) *Clients {
	return &Clients{store: store, hasher: hasher, sealer: sealer}
}

var (
	wechatAppIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	clientIDPattern    = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)
	scopePattern       = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,128}$`) // RFC 6749 scope-token
	supportedGrants    = []string{GrantTypeWeChatCode, "client_credentials", "refresh_token"}
	authMethods        = []string{"client_secret_basic", "client_secret_post", "none"}
)

// Create registers a client and returns it with its secret in clear, the
// only time the secret is ever shown.
func (cs *Clients) Create(ctx context.Context, md ClientMetadata) (*storage.Client, string, error) {
	if md.ClientID == "" {
		md.ClientID = uuid.NewString()
	}
	secret := md.ClientSecret
	if secret == "" && md.TokenEndpointAuthMethod != "none" {
		var err error
		if secret, err = GenerateClientSecret(); err != nil {
			return nil, "", err
		}
		md.ClientSecret = secret
	}
	c, err := cs.build(ctx, md, nil)
	if err != nil {
		return nil, "", err
	}
	if err := cs.store.CreateClient(ctx, c); err != nil {
		return nil, "", err
	}
	return c, secret, nil
}

// Update replaces a client's metadata. The secret and the WeChat app secret
// are kept unless new ones are given.
func (cs *Clients) Update(ctx context.Context, id string, md ClientMetadata) (*storage.Client, error) {
	if md.ClientID != "" && md.ClientID != id {
		return nil, fmt.Errorf("%w: client_id cannot be changed", ErrInvalidMetadata)
	}
	md.ClientID = id
	old, err := cs.store.LookupClient(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err := cs.build(ctx, md, old)
	if err != nil {
		return nil, err
	}
	if err := cs.store.UpdateClient(ctx, c); err != nil {
		return nil, err
	}
	return cs.store.LookupClient(ctx, id)
}

// Get, List and Delete pass through to the store.
func (cs *Clients) Get(ctx context.Context, id string) (*storage.Client, error) {
	return cs.store.LookupClient(ctx, id)
}

// List returns every client.
func (cs *Clients) List(ctx context.Context) ([]storage.Client, error) {
	return cs.store.ListClients(ctx)
}

// Delete removes a client and, through the store, its tokens.
func (cs *Clients) Delete(ctx context.Context, id string) error {
	return cs.store.DeleteClient(ctx, id)
}

// build validates md into a record; old is the record being replaced.
func (cs *Clients) build(ctx context.Context, md ClientMetadata, old *storage.Client) (*storage.Client, error) {
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
		md.GrantTypes = []string{"client_credentials"}
		if public {
			md.GrantTypes = []string{GrantTypeWeChatCode, "refresh_token"}
		}
	}
	for _, g := range md.GrantTypes {
		if !slices.Contains(supportedGrants, g) {
			return nil, bad("grant_types: %q is not supported (supported: %s)", g, strings.Join(supportedGrants, ", "))
		}
		if public && g == "client_credentials" {
			return nil, bad("grant_types: a public client (token_endpoint_auth_method none) cannot use client_credentials")
		}
		if !public && g == GrantTypeWeChatCode {
			return nil, bad("grant_types: the WeChat-code grant is for public mini-program clients (token_endpoint_auth_method none)")
		}
	}
	// A mini-program client is public and bound to exactly one appid; a
	// confidential client has no WeChat binding.
	if public && md.WeChatAppID == "" {
		return nil, bad("wechat_appid is required for a public client (token_endpoint_auth_method none)")
	}
	if !public && (md.WeChatAppID != "" || md.WeChatAppSecret != "") {
		return nil, bad("wechat_appid and wechat_app_secret belong to public clients (token_endpoint_auth_method none)")
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
	// Origins, like redirect URIs, are stored as given: the CORS check
	// compares them with the Origin header byte for byte.
	if err := checkCORSOrigins(md.AllowedCORSOrigins); err != nil {
		return nil, err
	}
	if md.ClientSecret != "" {
		if err := CheckClientSecret(md.ClientSecret); err != nil {
			return nil, bad("client_secret must be at least %d characters", MinClientSecretLen)
		}
	}
	if md.WeChatAppSecret != "" && md.WeChatAppID == "" {
		return nil, bad("wechat_app_secret needs wechat_appid")
	}
	c := &storage.Client{
		ID:                      md.ClientID,
		Name:                    md.ClientName,
		GrantTypes:              dedupe(md.GrantTypes),
		Scopes:                  dedupe(scopes),
		Audience:                dedupe(md.Audience),
		RedirectURIs:            dedupe(md.RedirectURIs),
		AllowedCORSOrigins:      dedupe(md.AllowedCORSOrigins),
		TokenEndpointAuthMethod: md.TokenEndpointAuthMethod,
		WeChatAppID:             md.WeChatAppID,
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
		sealed, err := cs.sealer.Seal([]byte(md.WeChatAppSecret), AppSecretAAD(md.WeChatAppID))
		if err != nil {
			return nil, err
		}
		c.WeChatAppSecret = sealed
	}
	if public && len(c.WeChatAppSecret) == 0 {
		return nil, bad("wechat_app_secret is required for a mini-program client")
	}
	return c, nil
}

// AppSecretAAD binds a sealed WeChat app secret to its appid.
func AppSecretAAD(appID string) []byte { return []byte("wxidp/wechat-app-secret/" + appID) }

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
