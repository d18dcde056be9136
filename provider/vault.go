package provider

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/google/uuid"
	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat"
	"github.com/wxidp/wxidp/storage"
)

// The session_key vault (issue 12): wxidp keeps each user's WeChat
// session_key sealed and never hands it out; a mini-program's backend asks
// wxidp to use it instead (decrypt encryptedData, check a rawData
// signature, renew it after a wx.login).

// ScopeWeChatData lets a mini-program user's access token use the vault.
const ScopeWeChatData = "wechat_data"

var (
	// ErrSessionKeyExpired: WeChat no longer honours the stored session_key
	// (a later wx.login replaced it, or it expired). The mini-program calls
	// wx.login() and renews it (RenewSessionKey).
	ErrSessionKeyExpired = errors.New("the stored session_key is no longer valid; call wx.login() and renew it")
	// ErrNotVaultToken: the token is valid but may not use the vault: not
	// a mini-program user's, or without the wechat_data scope.
	ErrNotVaultToken = errors.New("the access token may not use the session_key vault")
	// ErrOtherIdentity: a code from wx.login() of another WeChat user than
	// the token's.
	ErrOtherIdentity = errors.New("the code belongs to another WeChat user than the access token")
)

// VaultBadInput is a request the vault refuses as malformed (400), with
// what is wrong.
type VaultBadInput struct{ Reason string }

func (e *VaultBadInput) Error() string { return e.Reason }

// maxVaultData bounds encryptedData and rawData: WeChat's are a few kB.
const maxVaultData = 32 << 10

// VaultSession is one bearer token's access to its user's session_key.
type VaultSession struct {
	p       *Provider
	client  *storage.OAuthClient
	id      *storage.WeChatIdentity
	Subject string
}

// Vault authenticates a bearer token for the vault: a mini-program user's
// token (the WeChat-code grant's) with the wechat_data scope.
func (p *Provider) Vault(ctx context.Context, token string) (*VaultSession, error) {
	ar, sess, err := p.bearer(ctx, token)
	if err != nil {
		return nil, err
	}
	c, ok := ar.GetClient().(*storage.OAuthClient)
	if !ok || c.Record.WeChatAppID == "" || !c.GetGrantTypes().Has(grants.WeChatCode) ||
		!ar.GetGrantedScopes().Has(ScopeWeChatData) {
		return nil, ErrNotVaultToken
	}
	id, err := p.store.UserWeChatIdentity(ctx, sess.Subject, c.Record.WeChatAppID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNotVaultToken
	}
	if err != nil {
		return nil, outage(err)
	}
	return &VaultSession{p: p, client: c, id: id, Subject: sess.Subject}, nil
}

// sessionKey opens the stored session_key (base64, as WeChat gave it).
func (v *VaultSession) sessionKey() (string, error) {
	key, err := v.p.grant.cipher.Open(v.id.SessionKey, storage.SealedSessionKey.AAD(v.id.AppID, v.id.OpenID))
	if err != nil {
		return "", fosite.ErrServerError.WithWrap(err)
	}
	return string(key), nil
}

// stale asks WeChat whether the stored session_key is still current:
// ErrSessionKeyExpired if not, nil if it is, or why WeChat could not say.
func (v *VaultSession) stale(ctx context.Context, key string) error {
	g := v.p.grant
	secret, err := g.cipher.Open(v.client.Record.WeChatAppSecret, storage.SealedAppSecret.AAD(v.id.AppID))
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	tok, err := g.tokens.Get(ctx, v.id.AppID, string(secret), "")
	if err != nil {
		return g.wechatError(ctx, v.client.GetID(), v.id.AppID, err)
	}
	ok, err := g.wx.CheckSession(ctx, tok, v.id.OpenID, key)
	var api *wechat.APIError
	if errors.As(err, &api) && (api.Code == wechat.CodeInvalidToken || api.Code == wechat.CodeTokenExpired) {
		// Another holder replaced the app's access token: once more with
		// a fresh one, as the phone-number step does.
		if tok, err = g.tokens.Get(ctx, v.id.AppID, string(secret), tok); err != nil {
			return g.wechatError(ctx, v.client.GetID(), v.id.AppID, err)
		}
		ok, err = g.wx.CheckSession(ctx, tok, v.id.OpenID, key)
	}
	if err != nil {
		return g.wechatError(ctx, v.client.GetID(), v.id.AppID, err)
	}
	if !ok {
		return ErrSessionKeyExpired
	}
	return nil
}

// Decrypt opens encryptedData from a mini-program API (wx.getWeRunData,
// share info, ...): AES-128-CBC under the user's session_key, PKCS#7
// padding, JSON whose watermark names this client's mini-program. It
// returns the JSON as WeChat put it. Data that does not decrypt is either
// malformed (VaultBadInput) or was encrypted under a newer session_key
// (ErrSessionKeyExpired); WeChat's checksession tells which.
func (v *VaultSession) Decrypt(ctx context.Context, encryptedData, iv string) (json.RawMessage, error) {
	data, err := decodeVaultField("encryptedData", encryptedData, 0)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, &VaultBadInput{"encryptedData must be a non-empty multiple of 16 bytes."}
	}
	ivb, err := decodeVaultField("iv", iv, aes.BlockSize)
	if err != nil {
		return nil, err
	}
	key, err := v.sessionKey()
	if err != nil {
		return nil, err
	}
	plain, ok := decryptCBC(key, ivb, data)
	var doc struct {
		Watermark *struct {
			AppID     string `json:"appid"`
			Timestamp int64  `json:"timestamp"`
		} `json:"watermark"`
	}
	if ok {
		ok = json.Unmarshal(plain, &doc) == nil && doc.Watermark != nil
	}
	if !ok {
		if err := v.stale(ctx, key); err != nil {
			return nil, err
		}
		return nil, &VaultBadInput{"encryptedData does not decrypt with this user's current session_key, or is not WeChat's JSON."}
	}
	if doc.Watermark.AppID != v.id.AppID {
		return nil, &VaultBadInput{"The data's watermark names another mini-program."}
	}
	return plain, nil
}

// VerifySignature checks a rawData signature (wx.getUserInfo): SHA-1 of
// rawData followed by the session_key, in hex. A mismatch under a
// session_key WeChat no longer honours is ErrSessionKeyExpired.
func (v *VaultSession) VerifySignature(ctx context.Context, rawData, signature string) (bool, error) {
	if rawData == "" || len(rawData) > maxVaultData {
		return false, &VaultBadInput{"rawData is missing or too long."}
	}
	want, err := hex.DecodeString(signature)
	if err != nil || len(want) != sha1.Size {
		return false, &VaultBadInput{"signature must be 40 hexadecimal characters."}
	}
	key, err := v.sessionKey()
	if err != nil {
		return false, err
	}
	sum := sha1.Sum([]byte(rawData + key))
	if subtle.ConstantTimeCompare(sum[:], want) == 1 {
		return true, nil
	}
	if err := v.stale(ctx, key); err != nil {
		return false, err
	}
	return false, nil
}

// RenewSessionKey trades a fresh wx.login() code for the same user's new
// session_key and stores it, issuing no tokens. The code is claimed as a
// login's is, so it cannot be replayed; a code of another WeChat user is
// ErrOtherIdentity and changes nothing.
func (v *VaultSession) RenewSessionKey(ctx context.Context, code string) error {
	g := v.p.grant
	if !codePattern.MatchString(code) {
		return fosite.ErrInvalidRequest.WithHint("The 'code' parameter from wx.login() is missing or malformed.")
	}
	appID := v.id.AppID
	if err := g.store.ClaimWeChatCode(ctx, appID, storage.HashKey(appID+"\x00"+code), g.now().Add(codeClaimTTL)); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return fosite.ErrInvalidGrant.WithHint("The code was already used.")
		}
		return outage(err)
	}
	secret, err := g.cipher.Open(v.client.Record.WeChatAppSecret, storage.SealedAppSecret.AAD(appID))
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	ws, err := g.wx.Code2Session(ctx, appID, string(secret), code)
	if err != nil {
		return g.wechatError(ctx, v.client.GetID(), appID, err)
	}
	if ws.OpenID != v.id.OpenID {
		return ErrOtherIdentity
	}
	sealed, err := g.cipher.Seal([]byte(ws.SessionKey), storage.SealedSessionKey.AAD(appID, ws.OpenID))
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	_, err = g.store.LinkWeChatIdentity(ctx, &storage.WeChatIdentity{
		AppID: appID, OpenID: ws.OpenID, UnionID: ws.UnionID, SessionKey: sealed,
	}, uuid.NewString())
	if err != nil {
		return outage(err)
	}
	return nil
}

// decodeVaultField decodes standard base64 (WeChat's), of exactly size
// bytes when size > 0.
func decodeVaultField(name, s string, size int) ([]byte, error) {
	if s == "" {
		return nil, &VaultBadInput{"The '" + name + "' parameter is missing."}
	}
	if len(s) > maxVaultData*4/3+4 {
		return nil, &VaultBadInput{"The '" + name + "' parameter is too long."}
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, &VaultBadInput{"The '" + name + "' parameter is not base64."}
	}
	if size > 0 && len(b) != size {
		return nil, &VaultBadInput{"The '" + name + "' parameter must decode to 16 bytes."}
	}
	return b, nil
}

// decryptCBC decrypts data under the base64 session_key and removes its
// PKCS#7 padding; false if the key or the padding is wrong.
func decryptCBC(key string, iv, data []byte) ([]byte, bool) {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(k) != 16 {
		return nil, false
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, false
	}
	out := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, data)
	n := int(out[len(out)-1])
	if n == 0 || n > aes.BlockSize || !bytes.Equal(out[len(out)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, false
	}
	return out[:len(out)-n], true
}
