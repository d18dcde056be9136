package apptoken

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/wxidp/wxidp/provider/wechat"
	"github.com/wxidp/wxidp/storage"
)

// Refresh timing for WeChat access tokens. A stored token is used until
// expirySkew before it expires. In its last refreshBefore, the process that
// wins the lease asks WeChat again (at most once per recheckEvery: the
// stable_token API returns the same token until it is replaced) while every
// other process keeps using the stored one. Only without a usable token do
// callers wait, up to waitFor, for the refresher. A failed refresh keeps its
// lease until it runs out, which spaces out retries while WeChat fails.
const (
	expirySkew    = 30 * time.Second
	refreshBefore = 5 * time.Minute
	recheckEvery  = time.Minute
	leaseFor      = 10 * time.Second
	waitFor       = 6 * time.Second
	pollEvery     = 50 * time.Millisecond
)

// API is what the cache needs from WeChat (wechat.Client).
type API interface {
	StableToken(ctx context.Context, appID, secret string, forceRefresh bool) (wechat.AccessToken, error)
}

// Cipher seals and opens the stored tokens (keys.Cipher).
type Cipher interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// Cache keeps one WeChat access token per appid in the database, shared
// by every process: each refresh with force_refresh invalidates the previous
// token, so uncoordinated processes would keep breaking each other's (the
// classic multi-instance bug). A lease row, not a held lock, elects the
// refresher, so no connection waits on WeChat.
type Cache struct {
	store  storage.WeChatTokenStore
	wx     API
	cipher Cipher
	now    func() time.Time

	mu      sync.Mutex
	checked map[string]time.Time // appid -> when this process last asked WeChat
}

type storedToken struct {
	token     string
	expiresAt time.Time
}

// New returns a cache over store; now is the clock (nil means time.Now).
// Each process holds one.
func New(store storage.WeChatTokenStore, wx API, cipher Cipher, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{store: store, wx: wx, cipher: cipher, now: now, checked: map[string]time.Time{}}
}

// recheckDue reports whether this process may ask WeChat about appID's
// expiring token again, and notes that it does.
func (a *Cache) recheckDue(appID string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.checked[appID]) < recheckEvery {
		return false
	}
	a.checked[appID] = now
	return true
}

// Get returns a usable token for appID. stale, when set, is a token WeChat
// just rejected (40001/42001): it is replaced with force_refresh unless
// another process already replaced it.
func (a *Cache) Get(ctx context.Context, appID, secret, stale string) (string, error) {
	// Real time, not a.now: this bounds how long a request waits.
	deadline := time.Now().Add(waitFor)
	for {
		cur, err := a.load(ctx, appID)
		if err != nil {
			return "", err
		}
		now := a.now()
		usable := cur.token != "" && cur.token != stale && now.Add(expirySkew).Before(cur.expiresAt)
		due := !usable || (now.Add(refreshBefore).After(cur.expiresAt) && a.recheckDue(appID, now))
		if !due {
			return cur.token, nil
		}
		won, err := a.store.LeaseWeChatTokenRefresh(ctx, appID, now, now.Add(leaseFor))
		if err != nil {
			return "", err
		}
		if won {
			// Another process may have saved a token (and released its
			// lease) between our read and our lease: use it if it is fresh.
			if again, err := a.load(ctx, appID); err == nil && again.token != cur.token && again.token != stale &&
				now.Add(refreshBefore).Before(again.expiresAt) {
				return again.token, nil
			}
			fresh, err := a.refresh(ctx, appID, secret, stale != "" && cur.token == stale)
			if err != nil && usable {
				return cur.token, nil // WeChat failed; the old token still works
			}
			return fresh, err
		}
		if usable {
			return cur.token, nil // another process is refreshing it
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%w: another process is refreshing the access token of %s", wechat.ErrUnavailable, appID)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// load returns the stored token, or a zero value when there is none.
func (a *Cache) load(ctx context.Context, appID string) (storedToken, error) {
	t, err := a.store.GetWeChatToken(ctx, appID)
	if errors.Is(err, storage.ErrNotFound) {
		return storedToken{}, nil
	}
	if err != nil {
		return storedToken{}, err
	}
	if len(t.Token) == 0 {
		return storedToken{}, nil
	}
	plain, err := a.cipher.Open(t.Token, storage.SealedWeChatToken.AAD(appID))
	if err != nil {
		return storedToken{}, err
	}
	return storedToken{token: string(plain), expiresAt: t.ExpiresAt}, nil
}

func (a *Cache) refresh(ctx context.Context, appID, secret string, force bool) (string, error) {
	at, err := a.wx.StableToken(ctx, appID, secret, force)
	if err != nil {
		return "", err
	}
	sealed, err := a.cipher.Seal([]byte(at.Token), storage.SealedWeChatToken.AAD(appID))
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
