package storage

import (
	"context"
	"time"
)

// User is wxidp's own stable identity; ID is the opaque subject (sub) of
// every token issued for it, never a WeChat identifier.
type User struct {
	ID string
	// PhoneNumber is the number WeChat verified (E.164-like, as WeChat
	// returns phoneNumber); empty when unknown.
	PhoneNumber string
	// Nickname and Picture (an https URL) are the self-service profile the
	// mini-program collects (WeChat no longer hands them out); empty when
	// unset. ProfileUpdatedAt is zero until the profile is first set.
	Nickname         string
	Picture          string
	ProfileUpdatedAt time.Time
	// DisabledAt is when an operator disabled the user; zero while enabled.
	DisabledAt time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Disabled reports whether an operator has disabled the user.
func (u *User) Disabled() bool { return !u.DisabledAt.IsZero() }

// WeChatIdentity is one (appid, openid) pair and the user it belongs to.
type WeChatIdentity struct {
	AppID   string
	OpenID  string
	UnionID string // empty unless the app is bound to an Open Platform account
	UserID  string
	// SessionKey is the WeChat session_key sealed under WXIDP_SECRETS. It is
	// overwritten at every login (WeChat keeps one valid key per user).
	SessionKey []byte
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// UserStore maps WeChat identities to users.
type UserStore interface {
	// LinkWeChatIdentity records a successful WeChat login and returns the
	// user it belongs to, atomically:
	//   - a known (AppID, OpenID) keeps its user; its SessionKey is
	//     overwritten, and a UnionID it lacked is recorded (it keeps its user
	//     even if another user already holds that UnionID);
	//   - a new (AppID, OpenID) whose UnionID is held by an existing user
	//     joins that user;
	//   - otherwise a new user with ID newUserID is created.
	// Concurrent calls for one person (same AppID+OpenID, or same UnionID
	// across apps) yield exactly one user. The returned identity's UserID
	// and timestamps are filled in. Uses the transaction in ctx, if any.
	// ErrUserDisabled, writing nothing, if the user is disabled; the user
	// stays read-locked until the caller's transaction ends, so a
	// concurrent SetUserDisabled waits for the login's tokens and deletes
	// them.
	LinkWeChatIdentity(ctx context.Context, id *WeChatIdentity, newUserID string) (*User, error)
	// GetUser returns the user or ErrNotFound.
	GetUser(ctx context.Context, id string) (*User, error)
	// GetWeChatIdentity returns the identity or ErrNotFound.
	GetWeChatIdentity(ctx context.Context, appID, openID string) (*WeChatIdentity, error)
	// UserWeChatIdentity returns the user's identity in the mini-program
	// appID (one per app: an openid is per app and person), or ErrNotFound.
	UserWeChatIdentity(ctx context.Context, userID, appID string) (*WeChatIdentity, error)
	// SetUserPhone stores a verified phone number; ErrNotFound if no user.
	SetUserPhone(ctx context.Context, userID, phone string) error
}

// WeChatCodeStore remembers which wx.login codes were presented, so a
// replayed code is refused without calling WeChat, across processes.
type WeChatCodeStore interface {
	// ClaimWeChatCode records codeHash (a hash of appid and code; never the
	// code) until expiresAt. ErrAlreadyExists if it is already recorded and
	// unexpired: exactly one of any number of concurrent claims succeeds.
	ClaimWeChatCode(ctx context.Context, appID, codeHash string, expiresAt time.Time) error
}

// WeChatToken is an app's WeChat API access token (stable_token), shared by
// every process so they do not invalidate each other's.
type WeChatToken struct {
	AppID string
	// Token is the access token sealed under WXIDP_SECRETS.
	Token     []byte
	ExpiresAt time.Time
	UpdatedAt time.Time
}

// WeChatTokenStore keeps one WeChat access token per appid and coordinates
// its refresh across processes with a lease rather than a held lock, so no
// database connection waits on a call to WeChat.
type WeChatTokenStore interface {
	// GetWeChatToken returns the stored token or ErrNotFound.
	GetWeChatToken(ctx context.Context, appID string) (*WeChatToken, error)
	// LeaseWeChatTokenRefresh grants the caller the right to refresh appID's
	// token until `until`, unless another unexpired lease exists (then it
	// returns false). Works whether or not a token row exists yet.
	LeaseWeChatTokenRefresh(ctx context.Context, appID string, now, until time.Time) (bool, error)
	// SaveWeChatToken stores the token (insert or replace) and releases any
	// lease on appID.
	SaveWeChatToken(ctx context.Context, t *WeChatToken) error
}
