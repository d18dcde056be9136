package provider

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	fstorage "github.com/ory/fosite/storage"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat"
	"github.com/wxidp/wxidp/storage"
)

// codeClaimTTL outlives a wx.login code (5 minutes), so a replay is refused
// for as long as WeChat could still accept the code.
const codeClaimTTL = 10 * time.Minute

// WeChatAPI is what the grant needs from WeChat.
type WeChatAPI interface {
	Code2Session(ctx context.Context, appID, secret, jsCode string) (wechat.Session, error)
	StableToken(ctx context.Context, appID, secret string, forceRefresh bool) (wechat.AccessToken, error)
	PhoneNumber(ctx context.Context, accessToken, code string) (wechat.Phone, error)
	CheckSession(ctx context.Context, accessToken, openID, sessionKey string) (bool, error)
}

// Cipher seals and opens secrets at rest (keys.Cipher).
type Cipher interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// appTokens hands out a mini-program's WeChat access token
// (apptoken.Cache).
type appTokens interface {
	Get(ctx context.Context, appID, secret, stale string) (string, error)
}

// wechatGrant is fosite's token-endpoint handler for the WeChat-code grant.
// HandleTokenEndpointRequest only validates (no I/O); all effects happen in
// PopulateTokenEndpointResponse: the code is claimed, WeChat is called with
// no database transaction open, and only then are the user, identity and
// tokens written in one transaction, so a failed request writes none of
// them.
type wechatGrant struct {
	cfg    *fosite.Config
	store  Store
	wx     WeChatAPI
	cipher Cipher
	tokens appTokens
	log    *slog.Logger
	audit  *audit.Recorder
	access *oauth2.HandleHelper
	rt     oauth2.RefreshTokenStrategy
	idt    *openid.IDTokenHandleHelper
	now    func() time.Time
	// maxAge is the server's session maximum age (Config.SessionMaxAge).
	maxAge time.Duration
}

var _ fosite.TokenEndpointHandler = (*wechatGrant)(nil)

// newWeChatGrant builds the handler New composes, issuing tokens with
// fosite's strategies (core for access and refresh tokens, oidc for ID
// tokens).
func newWeChatGrant(fc *fosite.Config, core *oauth2.DefaultJWTStrategy, oidc openid.OpenIDConnectTokenStrategy, tokens appTokens, d Deps) *wechatGrant {
	return &wechatGrant{
		cfg: fc, store: d.Store, wx: d.WeChat, cipher: d.Cipher, log: d.Log, now: d.Now, audit: d.Audit,
		tokens: tokens,
		access: &oauth2.HandleHelper{AccessTokenStrategy: core, AccessTokenStorage: d.Store, Config: fc},
		rt:     core,
		idt:    &openid.IDTokenHandleHelper{IDTokenStrategy: oidc},
	}
}

var codePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

func (g *wechatGrant) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

func (g *wechatGrant) CanHandleTokenEndpointRequest(_ context.Context, ar fosite.AccessRequester) bool {
	return ar.GetGrantTypes().ExactOne(grants.WeChatCode)
}

func (g *wechatGrant) HandleTokenEndpointRequest(ctx context.Context, ar fosite.AccessRequester) error {
	if !g.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	client, ok := ar.GetClient().(*storage.OAuthClient)
	if !ok || !client.IsPublic() || client.Record.WeChatAppID == "" || len(client.Record.WeChatAppSecret) == 0 {
		return fosite.ErrUnauthorizedClient.WithHint("The client is not bound to a WeChat mini-program.")
	}
	if !client.GetGrantTypes().Has(grants.WeChatCode) {
		return fosite.ErrUnauthorizedClient.WithHint("The client may not use the WeChat-code grant.")
	}
	code := ar.GetRequestForm().Get("code")
	if code == "" {
		return fosite.ErrInvalidRequest.WithHint("The 'code' parameter from wx.login() is missing.")
	}
	if !codePattern.MatchString(code) {
		return fosite.ErrInvalidRequest.WithHint("The 'code' parameter is malformed.")
	}
	if pc := ar.GetRequestForm().Get("phone_code"); pc != "" && !codePattern.MatchString(pc) {
		return fosite.ErrInvalidRequest.WithHint("The 'phone_code' parameter is malformed.")
	}
	for _, s := range ar.GetRequestedScopes() {
		if !g.cfg.GetScopeStrategy(ctx)(client.GetScopes(), s) {
			return fosite.ErrInvalidScope.WithHintf("The client may not request scope '%s'.", s)
		}
	}
	if err := g.cfg.GetAudienceStrategy(ctx)(client.GetAudience(), ar.GetRequestedAudience()); err != nil {
		return err
	}
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	grantAudience(ar)
	now := g.now().UTC()
	sess := ar.GetSession().(*Session)
	sess.ClientID = client.GetID()
	sess.SetExpiresAt(fosite.AccessToken, now.Add(fosite.GetEffectiveLifespan(client, grants.WeChatCode, fosite.AccessToken, g.cfg.GetAccessTokenLifespan(ctx))))
	if ar.GetGrantedScopes().Has(ScopeOfflineAccess) {
		sess.SetExpiresAt(fosite.RefreshToken, now.Add(fosite.GetEffectiveLifespan(client, grants.WeChatCode, fosite.RefreshToken, g.cfg.GetRefreshTokenLifespan(ctx))))
	}
	// The login is now: its chain ends at now plus the session's maximum
	// age, and no token of it outlives that.
	idTTL := fosite.GetEffectiveLifespan(client, grants.WeChatCode, fosite.IDToken, g.cfg.GetIDTokenLifespan(ctx))
	clipToSession(sess, now.Add(sessionMaxAge(g.maxAge, client)), now, idTTL)
	return nil
}

func (g *wechatGrant) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) (err error) {
	if !g.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	client := ar.GetClient().(*storage.OAuthClient)
	appID := client.Record.WeChatAppID
	code := ar.GetRequestForm().Get("code")

	// Claim the code before calling WeChat: a replay, or a concurrent
	// duplicate, is refused here, so WeChat sees each code once.
	if err := g.store.ClaimWeChatCode(ctx, appID, storage.HashKey(appID+"\x00"+code), g.now().Add(codeClaimTTL)); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return fosite.ErrInvalidGrant.WithHint("The code was already used.")
		}
		return fosite.ErrServerError.WithWrap(err)
	}
	secret, err := g.cipher.Open(client.Record.WeChatAppSecret, storage.SealedAppSecret.AAD(appID))
	if err != nil {
		g.log.ErrorContext(ctx, "wechat app secret cannot be decrypted", "client_id", client.GetID(), "appid", appID, "err", err)
		return fosite.ErrServerError.WithWrap(err)
	}
	ws, err := g.wx.Code2Session(ctx, appID, string(secret), code)
	if err != nil {
		return g.wechatError(ctx, client.GetID(), appID, err)
	}
	var phone string
	if ar.GetGrantedScopes().Has(ScopePhone) {
		if pc := ar.GetRequestForm().Get("phone_code"); pc != "" {
			p, err := g.phoneNumber(ctx, appID, string(secret), pc)
			if err != nil {
				return g.wechatError(ctx, client.GetID(), appID, err)
			}
			phone = p
		}
	}
	sealedKey, err := g.cipher.Seal([]byte(ws.SessionKey), storage.SealedSessionKey.AAD(appID, ws.OpenID))
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}

	identity := &storage.WeChatIdentity{AppID: appID, OpenID: ws.OpenID, UnionID: ws.UnionID, SessionKey: sealedKey}
	if done, err := g.returning(ctx, ar, resp, identity, phone); done || err != nil {
		return err
	}

	// The transaction spans the two signatures of issue(): the subject is
	// only known once the identity is linked, and linking must roll back if
	// issuing fails. It costs a few milliseconds of one connection per login,
	// and no remote call happens inside it.
	ctx, err = fstorage.MaybeBeginTx(ctx, g.store)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	defer func() {
		if err != nil {
			if rerr := fstorage.MaybeRollbackTx(ctx, g.store); rerr != nil {
				g.log.ErrorContext(ctx, "rollback", "err", rerr)
			}
		}
	}()
	user, err := g.store.LinkWeChatIdentity(ctx, identity, uuid.NewString())
	if errors.Is(err, storage.ErrUserDisabled) {
		return fosite.ErrAccessDenied.WithHint("The user's account is disabled.")
	}
	if err != nil {
		return storageError(err)
	}
	if phone != "" {
		if err := g.store.SetUserPhone(ctx, user.ID, phone); err != nil {
			return storageError(err)
		}
		user.PhoneNumber = phone
	}
	g.fillSession(ar, user)
	if err := g.issue(ctx, ar, resp); err != nil {
		return err
	}
	if err := fstorage.MaybeCommitTx(ctx, g.store); err != nil {
		return storageError(err)
	}
	return nil
}

// returningLogins is the fast path of a returning user's login, for a
// store that has one (postgres.Store): the user is read first, the tokens
// are signed for them, and one statement writes the identity and the
// tokens if nothing changed meanwhile (see storage/postgres/fastlogin.go).
type returningLogins interface {
	ReturningUser(ctx context.Context, id *storage.WeChatIdentity) (*storage.User, error)
	ReturningLogin(ctx context.Context, id *storage.WeChatIdentity, user *storage.User, issue func(context.Context) error) (bool, error)
}

// returning logs a returning user in by the fast path and reports whether
// it did; when it did not, nothing was written and the caller links and
// issues in a transaction, which also explains a refusal. A login that
// brings a phone number takes the transactional path.
func (g *wechatGrant) returning(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder, id *storage.WeChatIdentity, phone string) (bool, error) {
	fast, ok := g.store.(returningLogins)
	if !ok || phone != "" {
		return false, nil
	}
	user, err := fast.ReturningUser(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, storageError(err)
	}
	g.fillSession(ar, user)
	written, err := fast.ReturningLogin(ctx, id, user, func(ctx context.Context) error { return g.issue(ctx, ar, resp) })
	if err != nil {
		return false, storageError(err)
	}
	return written, nil
}

// fillSession sets the subject and the ID-token claims of a fresh login.
func (g *wechatGrant) fillSession(ar fosite.AccessRequester, user *storage.User) {
	sess := ar.GetSession().(*Session)
	now := g.now().UTC()
	sess.Subject = user.ID
	claims := sess.IDTokenClaims()
	claims.Subject = user.ID
	claims.AuthTime = now.Truncate(time.Second)
	claims.RequestedAt = now
	claims.AuthenticationMethodsReferences = []string{"wechat"}
	userClaims(claims, ar.GetGrantedScopes(), user)
}

// issue writes the access token, and the refresh and ID tokens the granted
// scopes call for, inside the caller's transaction.
func (g *wechatGrant) issue(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	atSig, err := g.access.IssueAccessToken(ctx, g.cfg.GetAccessTokenLifespan(ctx), ar, resp)
	if err != nil {
		return storageError(err)
	}
	// A refresh token the client could never use is not issued.
	if ar.GetGrantedScopes().Has(ScopeOfflineAccess) && ar.GetClient().GetGrantTypes().Has(grants.RefreshToken) {
		rt, rtSig, err := g.rt.GenerateRefreshToken(ctx, ar)
		if err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		if err := g.store.CreateRefreshTokenSession(ctx, rtSig, atSig, ar.Sanitize([]string{})); err != nil {
			return storageError(err)
		}
		resp.SetExtra("refresh_token", rt)
	}
	if ar.GetGrantedScopes().Has(ScopeOpenID) {
		sess := ar.GetSession().(*Session)
		sess.IDTokenClaims().AccessTokenHash = g.idt.GetAccessTokenHash(ctx, ar, resp)
		lifespan := fosite.GetEffectiveLifespan(ar.GetClient(), grants.WeChatCode, fosite.IDToken, g.cfg.GetIDTokenLifespan(ctx))
		if err := g.idt.IssueExplicitIDToken(ctx, lifespan, ar, resp); err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
	}
	return nil
}

// phoneNumber fetches the verified number for a phone code with the app's
// shared access token, replacing the token once if WeChat says it is no
// longer valid.
func (g *wechatGrant) phoneNumber(ctx context.Context, appID, secret, phoneCode string) (string, error) {
	tok, err := g.tokens.Get(ctx, appID, secret, "")
	if err != nil {
		return "", err
	}
	p, err := g.wx.PhoneNumber(ctx, tok, phoneCode)
	var api *wechat.APIError
	if errors.As(err, &api) && (api.Code == wechat.CodeInvalidToken || api.Code == wechat.CodeTokenExpired) {
		if tok, err = g.tokens.Get(ctx, appID, secret, tok); err != nil {
			return "", err
		}
		p, err = g.wx.PhoneNumber(ctx, tok, phoneCode)
	}
	if err != nil {
		return "", err
	}
	// The access token says which app asks, not which app the phone code
	// came from: the watermark does, and a code from another app is refused.
	if p.WatermarkAppID != appID {
		return "", fosite.ErrInvalidGrant.WithHint("The phone_code was not issued to this mini-program.")
	}
	return p.PhoneNumber, nil
}
