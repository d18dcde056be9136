package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/provider/clientreg"
	"github.com/wxidp/wxidp/storage"
)

// ClientRegistry is what the admin API needs for clients.
type ClientRegistry interface {
	Create(ctx context.Context, md clientreg.Metadata) (*storage.Client, string, error)
	Update(ctx context.Context, id string, md clientreg.Metadata, ifUpdatedAt time.Time) (*storage.Client, error)
	Get(ctx context.Context, id string) (*storage.Client, error)
	List(ctx context.Context) ([]storage.Client, error)
	Delete(ctx context.Context, id string) error
}

// KeyLister lists, rotates and revokes signing keys.
type KeyLister interface {
	Keys() []storage.SigningKey
	Rotate(ctx context.Context) error
	Revoke(ctx context.Context, kid string) error
}

// AdminConfig configures the admin server.
type AdminConfig struct {
	Token   string
	Log     *slog.Logger
	Clients ClientRegistry
	Keys    KeyLister
	Metrics *Metrics
	// Audit serves GET /admin/audit; Recorder records the admin actions
	// (nil records nothing).
	Audit    AuditLog
	Recorder *audit.Recorder
	// Users serves /admin/users; nil answers 404 there.
	Users UserAdmin
}

type admin struct {
	AdminConfig
	tokenSum [32]byte
}

// NewAdmin builds the admin listener's handler.
func NewAdmin(cfg AdminConfig) (*echo.Echo, error) {
	if len(cfg.Token) < 16 {
		return nil, errors.New("web: admin token must be at least 16 characters")
	}
	if tok, ok := bearerToken("Bearer " + cfg.Token); !ok || tok != cfg.Token {
		// Such a token could never be presented in an Authorization header.
		return nil, errors.New("web: admin token must not contain spaces or control characters")
	}
	a := &admin{AdminConfig: cfg, tokenSum: sha256.Sum256([]byte(cfg.Token))}
	e := newEcho(cfg.Log, false, cfg.Metrics.middleware("admin"))
	// Routes carry the auth middleware one by one: an echo Group with
	// middleware answers a wrong method with 404 instead of 405.
	auth := a.authenticate
	e.POST("/admin/clients", a.createClient, auth)
	getAndHead(e, "/admin/clients", a.listClients, auth)
	getAndHead(e, "/admin/clients/:id", a.getClient, auth)
	e.PUT("/admin/clients/:id", a.updateClient, auth)
	e.DELETE("/admin/clients/:id", a.deleteClient, auth)
	getAndHead(e, "/admin/keys", a.listKeys, auth)
	e.POST("/admin/keys/rotate", a.rotateKeys, auth)
	e.DELETE("/admin/keys/:kid", a.revokeKey, auth)
	getAndHead(e, "/admin/audit", a.listAudit, auth)
	getAndHead(e, "/admin/users", a.listUsers, auth)
	getAndHead(e, "/admin/users/:sub", a.getUser, auth)
	e.POST("/admin/users/:sub/disable", a.setDisabled(true), auth)
	e.POST("/admin/users/:sub/enable", a.setDisabled(false), auth)
	e.DELETE("/admin/users/:sub", a.deleteUser, auth)
	getAndHead(e, "/metrics", cfg.Metrics.handler(), auth)
	return e, nil
}

// authenticate compares hashes in constant time, so neither the token nor
// its length leaks through timing.
func (a *admin) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		tok, ok := bearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
		sum := sha256.Sum256([]byte(tok))
		if !ok || subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) != 1 {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="wxidp-admin"`)
			return newAPIError(http.StatusUnauthorized, "invalid_token", "A valid admin bearer token is required.")
		}
		return next(c)
	}
}

// clientRequest is the RFC 7591 registration body.
type clientRequest struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret"`
	ClientName              string   `json:"client_name"`
	GrantTypes              []string `json:"grant_types"`
	Scope                   string   `json:"scope"`
	Audience                []string `json:"audience"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	WeChatAppID             string   `json:"wechat_appid"`
	WeChatAppSecret         string   `json:"wechat_app_secret"`
	AllowedCORSOrigins      []string `json:"allowed_cors_origins"`
	PostLogoutRedirectURIs  []string `json:"post_logout_redirect_uris"`
	WeChatLoginPage         string   `json:"wechat_login_page"`
	AccessTokenTTLSeconds   int64    `json:"access_token_ttl_seconds"`
	RefreshTokenTTLSeconds  int64    `json:"refresh_token_ttl_seconds"`
	SessionMaxAgeSeconds    int64    `json:"session_max_age_seconds"`
}

// clientResponse never carries the hash or the WeChat app secret.
type clientResponse struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	ClientName              string   `json:"client_name"`
	GrantTypes              []string `json:"grant_types"`
	Scope                   string   `json:"scope"`
	Audience                []string `json:"audience"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	WeChatAppID             string   `json:"wechat_appid,omitempty"`
	WeChatAppSecretSet      bool     `json:"wechat_app_secret_set"`
	AllowedCORSOrigins      []string `json:"allowed_cors_origins"`
	PostLogoutRedirectURIs  []string `json:"post_logout_redirect_uris"`
	WeChatLoginPage         string   `json:"wechat_login_page,omitempty"`
	// The client's own lifetimes; absent: the server's.
	AccessTokenTTLSeconds  int64  `json:"access_token_ttl_seconds,omitempty"`
	RefreshTokenTTLSeconds int64  `json:"refresh_token_ttl_seconds,omitempty"`
	SessionMaxAgeSeconds   int64  `json:"session_max_age_seconds,omitempty"`
	UpdatedAt              string `json:"updated_at"`
}

func toResponse(c *storage.Client, secret string) clientResponse {
	r := clientResponse{
		ClientID:                c.ID,
		ClientSecret:            secret,
		ClientIDIssuedAt:        c.CreatedAt.Unix(),
		ClientName:              c.Name,
		GrantTypes:              orEmpty(c.GrantTypes),
		Scope:                   strings.Join(c.Scopes, " "),
		Audience:                orEmpty(c.Audience),
		RedirectURIs:            orEmpty(c.RedirectURIs),
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
		WeChatAppID:             c.WeChatAppID,
		WeChatAppSecretSet:      len(c.WeChatAppSecret) > 0,
		AllowedCORSOrigins:      orEmpty(c.AllowedCORSOrigins),
		PostLogoutRedirectURIs:  orEmpty(c.PostLogoutRedirectURIs),
		WeChatLoginPage:         c.WeChatLoginPage,
		AccessTokenTTLSeconds:   int64(c.AccessTokenTTL / time.Second),
		RefreshTokenTTLSeconds:  int64(c.RefreshTokenTTL / time.Second),
		SessionMaxAgeSeconds:    int64(c.SessionMaxAge / time.Second),
		UpdatedAt:               c.UpdatedAt.UTC().Format(time.RFC3339),
	}
	if secret != "" {
		never := int64(0) // RFC 7591: 0 means the secret does not expire
		r.ClientSecretExpiresAt = &never
	}
	return r
}

func (r clientRequest) metadata() clientreg.Metadata {
	return clientreg.Metadata(r)
}

func (a *admin) createClient(c echo.Context) error {
	var req clientRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	cl, secret, err := a.Clients.Create(c.Request().Context(), req.metadata())
	a.recordCreate(c, cl, req, err)
	if err != nil {
		return clientError(err)
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	c.Response().Header().Set(echo.HeaderLocation, "/admin/clients/"+cl.ID)
	setClientETag(c, cl)
	return c.JSON(http.StatusCreated, toResponse(cl, secret))
}

func (a *admin) listClients(c echo.Context) error {
	list, err := a.Clients.List(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]clientResponse, len(list))
	for i := range list {
		out[i] = toResponse(&list[i], "")
	}
	return c.JSON(http.StatusOK, map[string]any{"clients": out})
}

func (a *admin) getClient(c echo.Context) error {
	cl, err := a.Clients.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return clientError(err)
	}
	setClientETag(c, cl)
	return c.JSON(http.StatusOK, toResponse(cl, ""))
}

func (a *admin) updateClient(c echo.Context) error {
	var req clientRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ifUpdatedAt, err := ifMatchUpdatedAt(c)
	if err != nil {
		return err
	}
	cl, err := a.Clients.Update(c.Request().Context(), c.Param("id"), req.metadata(), ifUpdatedAt)
	a.recordUpdate(c, req, err)
	if err != nil {
		return clientError(err)
	}
	setClientETag(c, cl)
	return c.JSON(http.StatusOK, toResponse(cl, ""))
}

func (a *admin) deleteClient(c echo.Context) error {
	err := a.Clients.Delete(c.Request().Context(), c.Param("id"))
	a.record(c, audit.ClientDeleted, c.Param("id"), err, nil)
	if err != nil {
		return clientError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

type keyResponse struct {
	KID         string `json:"kid"`
	Algorithm   string `json:"alg"`
	State       string `json:"state"`
	CreatedAt   string `json:"created_at"`
	ActivatedAt string `json:"activated_at,omitempty"`
	RetiredAt   string `json:"retired_at,omitempty"`
}

func (a *admin) listKeys(c echo.Context) error {
	keys := a.Keys.Keys()
	out := make([]keyResponse, len(keys))
	for i, k := range keys {
		out[i] = keyResponse{KID: k.KID, Algorithm: k.Algorithm, State: string(k.State),
			CreatedAt: ts(k.CreatedAt), ActivatedAt: ts(k.ActivatedAt), RetiredAt: ts(k.RetiredAt)}
	}
	return c.JSON(http.StatusOK, map[string]any{"keys": out})
}

func (a *admin) rotateKeys(c echo.Context) error {
	activeBefore := activeKID(a.Keys.Keys())
	err := a.Keys.Rotate(c.Request().Context())
	a.recordRotation(c, activeBefore, err)
	if err != nil {
		if errors.Is(err, keys.ErrNotReady) {
			return newAPIError(http.StatusConflict, "not_ready", err.Error())
		}
		return err
	}
	return a.listKeys(c)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func clientError(err error) error {
	switch {
	case errors.Is(err, clientreg.ErrInvalidRedirectURI):
		return newAPIError(http.StatusBadRequest, "invalid_redirect_uri", err.Error())
	case errors.Is(err, clientreg.ErrInvalidMetadata):
		return newAPIError(http.StatusBadRequest, "invalid_client_metadata", err.Error())
	case errors.Is(err, storage.ErrNotFound):
		return newAPIError(http.StatusNotFound, "not_found", "No such client.")
	case errors.Is(err, storage.ErrStale):
		return clientChanged()
	case errors.Is(err, storage.ErrAlreadyExists):
		return newAPIError(http.StatusConflict, "already_exists", "A client with this client_id already exists.")
	default:
		return err
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
