package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/provider/wechat"
	"github.com/wxidp/wxidp/storage"
)

// Refresh timing for WeChat access tokens: refreshed when less than
// tokenRefreshBefore remains; a refresh lease lasts leaseFor; a process that
// finds another's lease polls for the new token up to waitFor.
const (
	tokenRefreshBefore = 5 * time.Minute
	leaseFor           = 15 * time.Second
	waitFor            = 6 * time.Second
	pollEvery          = 50 * time.Millisecond
)

// appTokens keeps one WeChat access token per appid in the database, shared
// by every process: each refresh of a stable token with force_refresh
// invalidates the previous one, so uncoordinated processes would keep
// breaking each other's (the classic multi-instance bug). A lease row, not a
// held lock, elects the refresher, so no connection waits on WeChat.
type appTokens struct {
	store  storage.WeChatTokenStore
	wx     WeChatAPI
	cipher Cipher
	now    func() time.Time
}

// get returns a usable token for appID. stale, when set, is a token WeChat
// just rejected (40001/42001): it is replaced with force_refresh unless
// another process already replaced it.
func (a *appTokens) get(ctx context.Context, appID, secret, stale string) (string, error) {
	deadline := a.now().Add(waitFor)
	for {
		tok, err := a.current(ctx, appID)
		if err != nil {
			return "", err
		}
		if tok != "" && tok != stale {
			return tok, nil
		}
		now := a.now()
		won, err := a.store.LeaseWeChatTokenRefresh(ctx, appID, now, now.Add(leaseFor))
		if err != nil {
			return "", err
		}
		if won {
			return a.refresh(ctx, appID, secret, stale != "")
		}
		if now.After(deadline) {
			return "", fmt.Errorf("%w: another process is refreshing the access token of %s", wechat.ErrUnavailable, appID)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// current returns the stored token if it is not close to expiry, else "".
func (a *appTokens) current(ctx context.Context, appID string) (string, error) {
	t, err := a.store.GetWeChatToken(ctx, appID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if len(t.Token) == 0 || a.now().Add(tokenRefreshBefore).After(t.ExpiresAt) {
		return "", nil
	}
	plain, err := a.cipher.Open(t.Token, wechatTokenAAD(appID))
	if err != nil {
		return "", err
	}
	return string(plain), nil
}

func (a *appTokens) refresh(ctx context.Context, appID, secret string, force bool) (string, error) {
	at, err := a.wx.StableToken(ctx, appID, secret, force)
	if err != nil {
		return "", err
	}
	sealed, err := a.cipher.Seal([]byte(at.Token), wechatTokenAAD(appID))
	if err != nil {
		return "", err
	}
	now := a.now()
	if err := a.store.SaveWeChatToken(ctx, &storage.WeChatToken{
		AppID: appID, Token: sealed, ExpiresAt: now.Add(at.ExpiresIn), UpdatedAt: now,
	}); err != nil {
		return "", err
	}
	return at.Token, nil
}

func wechatTokenAAD(appID string) []byte { return []byte("wxidp/wechat-access-token/" + appID) }

// phoneNumber fetches the verified number for a phone code with the app's
// shared access token, replacing the token once if WeChat says it is no
// longer valid.
func (g *wechatGrant) phoneNumber(ctx context.Context, appID, secret, phoneCode string) (string, error) {
	tok, err := g.tokens.get(ctx, appID, secret, "")
	if err != nil {
		return "", err
	}
	p, err := g.wx.PhoneNumber(ctx, tok, phoneCode)
	var api *wechat.APIError
	if errors.As(err, &api) && (api.Code == wechat.CodeInvalidToken || api.Code == wechat.CodeTokenExpired) {
		if tok, err = g.tokens.get(ctx, appID, secret, tok); err != nil {
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
