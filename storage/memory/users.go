package memory

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// identityKey is the primary key of a WeChat identity.
type identityKey struct{ appID, openID string }

// codeKey is the primary key of a claimed wx.login code.
type codeKey struct{ appID, codeHash string }

// wechatToken is an appid's token row: like the PostgreSQL table, it may hold
// only a lease before the first token is saved.
type wechatToken struct {
	token      storage.WeChatToken
	hasToken   bool
	leaseUntil time.Time // zero when no lease
}

// userData holds the maps of users.go; Store embeds it so New can make them
// in one place.
type userData struct {
	users      map[string]storage.User
	identities map[identityKey]storage.WeChatIdentity
	// unions maps a unionid to the user it joins: the first user recorded
	// with it, as wechat_unions does in PostgreSQL.
	unions   map[string]string
	codes    map[codeKey]time.Time
	wxTokens map[string]wechatToken
	// userLocks are the users each transaction read-locked (people.go).
	userLocks map[*tx]map[string]bool
}

func newUserData() userData {
	return userData{
		users:      map[string]storage.User{},
		identities: map[identityKey]storage.WeChatIdentity{},
		unions:     map[string]string{},
		codes:      map[codeKey]time.Time{},
		wxTokens:   map[string]wechatToken{},
		userLocks:  map[*tx]map[string]bool{},
	}
}

func copyIdentity(id storage.WeChatIdentity) storage.WeChatIdentity {
	id.SessionKey = bytes.Clone(id.SessionKey)
	return id
}

// LinkWeChatIdentity records a login and returns the identity's user,
// filling in id's UserID, UnionID (as stored) and timestamps. The store
// mutex makes it atomic; the rules are those of the PostgreSQL backend: a
// known identity keeps its user, a reported unionid replaces the stored one
// and is recorded for the user if nobody holds it, and a new identity joins
// the unionid's holder or gets a new user. A disabled user's login is
// refused, writing nothing; the user is read-locked until ctx's transaction
// ends (people.go).
func (s *Store) LinkWeChatIdentity(ctx context.Context, id *storage.WeChatIdentity, newUserID string) (*storage.User, error) {
	t, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	stamp := now()
	key := identityKey{id.AppID, id.OpenID}
	stored, known := s.identities[key]
	switch {
	case known:
		if err := s.refuseDisabled("link wechat identity", stored.UserID); err != nil {
			return nil, err
		}
		if id.UnionID != "" {
			stored.UnionID = id.UnionID
		}
		stored.SessionKey = bytes.Clone(id.SessionKey)
		stored.UpdatedAt = stamp
	default:
		userID := newUserID
		if holder, ok := s.unions[id.UnionID]; ok && id.UnionID != "" {
			if err := s.refuseDisabled("link wechat identity", holder); err != nil {
				return nil, err
			}
			userID = holder
		} else {
			if _, taken := s.users[newUserID]; taken {
				return nil, fmt.Errorf("memory: user %q: %w", newUserID, storage.ErrAlreadyExists)
			}
			put(t, s.users, newUserID, storage.User{ID: newUserID, CreatedAt: stamp, UpdatedAt: stamp})
		}
		stored = storage.WeChatIdentity{
			AppID: id.AppID, OpenID: id.OpenID, UnionID: id.UnionID, UserID: userID,
			SessionKey: bytes.Clone(id.SessionKey), CreatedAt: stamp, UpdatedAt: stamp,
		}
	}
	put(t, s.identities, key, stored)
	if _, held := s.unions[stored.UnionID]; !held && stored.UnionID != "" {
		put(t, s.unions, stored.UnionID, stored.UserID)
	}
	id.UnionID, id.UserID = stored.UnionID, stored.UserID
	id.CreatedAt, id.UpdatedAt = stored.CreatedAt, stored.UpdatedAt
	s.holdUser(t, stored.UserID)
	u := s.users[stored.UserID]
	return &u, nil
}

// GetUser returns a copy of the user or storage.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (*storage.User, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return nil, fmt.Errorf("memory: user %q: %w", id, storage.ErrNotFound)
	}
	return &u, nil
}

// GetWeChatIdentity returns a copy of the identity or storage.ErrNotFound.
func (s *Store) GetWeChatIdentity(ctx context.Context, appID, openID string) (*storage.WeChatIdentity, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	id, ok := s.identities[identityKey{appID, openID}]
	if !ok {
		return nil, fmt.Errorf("memory: wechat identity: %w", storage.ErrNotFound)
	}
	out := copyIdentity(id)
	return &out, nil
}

// UserWeChatIdentity returns the user's identity in appID (the latest
// updated, as the PostgreSQL store does), or storage.ErrNotFound.
func (s *Store) UserWeChatIdentity(ctx context.Context, userID, appID string) (*storage.WeChatIdentity, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var (
		found storage.WeChatIdentity
		ok    bool
	)
	for k, id := range s.identities {
		if k.appID == appID && id.UserID == userID && (!ok || id.UpdatedAt.After(found.UpdatedAt)) {
			found, ok = id, true
		}
	}
	if !ok {
		return nil, fmt.Errorf("memory: the user's wechat identity: %w", storage.ErrNotFound)
	}
	out := copyIdentity(found)
	return &out, nil
}

// SetUserPhone stores a verified phone number; storage.ErrNotFound if there
// is no such user.
func (s *Store) SetUserPhone(ctx context.Context, userID, phone string) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	u, ok := s.users[userID]
	if !ok {
		return fmt.Errorf("memory: user %q: %w", userID, storage.ErrNotFound)
	}
	u.PhoneNumber = phone
	u.UpdatedAt = now()
	put(t, s.users, userID, u)
	return nil
}

// ClaimWeChatCode records codeHash until expiresAt, first forgetting expired
// codes so the map does not grow without bound; storage.ErrAlreadyExists if
// it is recorded and unexpired.
func (s *Store) ClaimWeChatCode(ctx context.Context, appID, codeHash string, expiresAt time.Time) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	cutoff := time.Now()
	for k, exp := range s.codes {
		if !exp.After(cutoff) {
			drop(t, s.codes, k)
		}
	}
	key := codeKey{appID, codeHash}
	if _, ok := s.codes[key]; ok {
		return fmt.Errorf("memory: wechat code: %w", storage.ErrAlreadyExists)
	}
	put(t, s.codes, key, expiresAt)
	return nil
}

// GetWeChatToken returns a copy of appID's token, or storage.ErrNotFound
// when none was saved yet.
func (s *Store) GetWeChatToken(ctx context.Context, appID string) (*storage.WeChatToken, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	row, ok := s.wxTokens[appID]
	if !ok || !row.hasToken {
		return nil, fmt.Errorf("memory: wechat token %q: %w", appID, storage.ErrNotFound)
	}
	out := row.token
	out.Token = bytes.Clone(out.Token)
	return &out, nil
}

// LeaseWeChatTokenRefresh grants the refresh of appID's token until
// `until`, unless another lease runs past now.
func (s *Store) LeaseWeChatTokenRefresh(ctx context.Context, appID string, now, until time.Time) (bool, error) {
	t, err := s.lock(ctx)
	if err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	row := s.wxTokens[appID]
	if row.leaseUntil.After(now) {
		return false, nil
	}
	row.leaseUntil = until
	put(t, s.wxTokens, appID, row)
	return true, nil
}

// SaveWeChatToken stores a copy of tok (setting its UpdatedAt) and releases
// any lease on its appid.
func (s *Store) SaveWeChatToken(ctx context.Context, tok *storage.WeChatToken) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	tok.UpdatedAt = now()
	stored := *tok
	stored.Token = bytes.Clone(tok.Token)
	if !stored.ExpiresAt.IsZero() {
		stored.ExpiresAt = stored.ExpiresAt.UTC().Truncate(time.Microsecond)
	}
	// A nil token reads as none, as the NULL it is in PostgreSQL.
	put(t, s.wxTokens, tok.AppID, wechatToken{token: stored, hasToken: stored.Token != nil})
	return nil
}
