package storage

import (
	"context"
	"errors"
	"time"
)

// ErrUserDisabled is returned when a disabled user would be issued tokens:
// a refresh of one of their (surviving) refresh tokens, a WeChat login
// linking to them. Nothing was written.
var ErrUserDisabled = errors.New("storage: the user is disabled")

// UserFilter selects users for the admin API; zero fields do not filter,
// and the given ones must all hold.
type UserFilter struct {
	// OpenID matches an identity's openid, in AppID only when AppID is set
	// (an openid is per app, so two apps may share one by chance).
	OpenID string
	AppID  string
	// UnionID matches a user holding an identity reported with it.
	UnionID string
	// Phone is an exact match on the verified phone number.
	Phone string
	// ClientID keeps users who signed in through the client: an identity in
	// the client's mini-program (its WeChat appid), or a token issued to it
	// that is still stored (websites, which have no appid).
	ClientID string
	// CreatedAfter is inclusive, CreatedBefore exclusive.
	CreatedAfter, CreatedBefore time.Time
}

// UserCursor is where a page of users ended: the (CreatedAt, ID) of its
// last (oldest) user. The next page holds the users strictly older.
type UserCursor struct {
	CreatedAt time.Time
	ID        string
}

// TokenChain is a live refresh-token chain of a user: every token descended
// from one login, named by the login's request ID (never a token).
type TokenChain struct {
	RequestID string
	ClientID  string
	Scopes    []string
	// IssuedAt is when the chain's current refresh token was issued,
	// ExpiresAt when it expires unless used.
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// UserDetails is everything the admin API shows of a user. Identities have
// no SessionKey: it never leaves the store through this view.
type UserDetails struct {
	User
	Identities []WeChatIdentity
	// LastLoginAt is the latest WeChat login or browser (scan) login; zero
	// if none is recorded.
	LastLoginAt time.Time
	Chains      []TokenChain
}

// ProfilePatch changes a user's self-service profile: a nil field keeps its
// value, a pointer to "" clears it. The caller has validated the values.
type ProfilePatch struct {
	Nickname *string
	Picture  *string
}

// PeopleStore administers users: finding them, disabling them, their
// profile, and erasing them.
type PeopleStore interface {
	// ListUsers returns at most limit users matching f, newest first by
	// (CreatedAt, ID), starting strictly after the cursor when one is given.
	ListUsers(ctx context.Context, f UserFilter, after *UserCursor, limit int) ([]User, error)
	// UserDetails returns the user with their identities (no session keys),
	// last login and live refresh-token chains, or ErrNotFound.
	UserDetails(ctx context.Context, id string) (*UserDetails, error)
	// SetUserDisabled disables or enables the user and returns them as
	// stored; ErrNotFound if absent. Disabling also deletes, in the same
	// step, every token, authorization code, PKCE and OpenID Connect
	// session, login ticket and browser session of the user, and excludes
	// concurrent issuance: a refresh or login of the user that commits
	// after the user is disabled fails with ErrUserDisabled and none that
	// committed before leaves a token behind. Enabling restores nothing:
	// the user logs in again. Disabling a disabled user keeps its
	// DisabledAt.
	SetUserDisabled(ctx context.Context, id string, disabled bool) (*User, error)
	// SetUserProfile applies p, sets ProfileUpdatedAt (and UpdatedAt) to
	// now and returns the user as stored; ErrNotFound if absent.
	SetUserProfile(ctx context.Context, id string, p ProfilePatch) (*User, error)
	// EraseUser deletes the user and everything that names them, in one
	// transaction: identities (openids, unionids, sealed session keys),
	// phone number, profile, every token, code, login ticket and browser
	// session. The same person's next WeChat login creates a new user.
	// ErrNotFound if absent. Like disabling, it excludes concurrent
	// issuance. The audit trail is not touched (it never names more than
	// the subject).
	EraseUser(ctx context.Context, id string) error
}
