package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// cloneRecord deep-copies rec: records go in and out of the maps as copies
// so no caller can reach, or race on, what the store holds.
func cloneRecord(rec storage.RequestRecord) storage.RequestRecord {
	rec.RequestedScopes = slices.Clone(rec.RequestedScopes)
	rec.GrantedScopes = slices.Clone(rec.GrantedScopes)
	rec.RequestedAudience = slices.Clone(rec.RequestedAudience)
	rec.GrantedAudience = slices.Clone(rec.GrantedAudience)
	rec.Session = bytes.Clone(rec.Session)
	return rec
}

// create flattens r and stores it under key. A taken key is refused, as the
// primary key of the PostgreSQL tables refuses it.
func (s *Store) create(ctx context.Context, k kind, key string, r fosite.Requester, tt fosite.TokenType, accessSig string) error {
	rec, err := storage.NewRequestRecord(key, r, tt)
	if err != nil {
		return err
	}
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.rows[k][key]; ok {
		return fmt.Errorf("memory: %s: %w", kindNames[k], storage.ErrAlreadyExists)
	}
	put(t, s.rows[k], key, row{rec: cloneRecord(rec), active: true, accessSig: accessSig})
	return nil
}

// get rebuilds the request stored under key. The lock is released before the
// client is loaded, since GetClient takes it again.
func (s *Store) get(ctx context.Context, k kind, key string, session fosite.Session) (*fosite.Request, bool, error) {
	if _, err := s.lock(ctx); err != nil {
		return nil, false, err
	}
	r, ok := s.rows[k][key]
	if ok {
		r.rec = cloneRecord(r.rec)
	}
	// A refresh token in its grace period reads as active.
	active := r.active || (k == refreshKind && s.inGrace(r, s.clockNow()))
	s.mu.Unlock()
	if !ok {
		return nil, false, fosite.ErrNotFound
	}
	req, err := r.rec.Requester(ctx, s, session)
	if err != nil {
		return nil, false, err
	}
	return req, active, nil
}

func (s *Store) remove(ctx context.Context, k kind, key string) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	drop(t, s.rows[k], key)
	return nil
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) CreateAccessTokenSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.create(ctx, accessKind, signature, r, fosite.AccessToken, "")
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) GetAccessTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, _, err := s.get(ctx, accessKind, signature, session)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return s.remove(ctx, accessKind, signature)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, r fosite.Requester) error {
	return s.create(ctx, refreshKind, signature, r, fosite.RefreshToken, accessSignature)
}

// GetRefreshTokenSession returns the request even for an inactive token:
// fosite needs it to revoke the chain on reuse.
func (s *Store) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, active, err := s.get(ctx, refreshKind, signature, session)
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fosite.ErrInactiveToken
	}
	return req, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return s.remove(ctx, refreshKind, signature)
}

// RotateRefreshToken deactivates the presented token only if it is still
// active, all under one lock, so of several concurrent refreshes with the
// same token exactly one wins. A token in its grace period is rotated once
// more, spending the grace and deleting nothing (its access token went at
// the rotation), so with a grace period exactly two win. A disabled user's
// token does not rotate, and the user is read-locked until ctx's
// transaction ends (people.go), as in PostgreSQL.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	now := s.clockNow()
	r, ok := s.rows[refreshKind][signature]
	if ok {
		if err := s.refuseDisabled("rotate refresh token", r.rec.Subject); err != nil {
			return err
		}
		s.holdUser(t, r.rec.Subject)
	}
	switch {
	// A request ID that does not match means a caller bug; treating it as
	// unknown keeps the token usable rather than burning someone else's.
	case !ok || r.rec.RequestID != requestID:
		return fosite.ErrNotFound
	case r.active:
		r.active = false
		r.deactivatedAt = now
		put(t, s.rows[refreshKind], signature, r)
		if r.accessSig != "" {
			drop(t, s.rows[accessKind], r.accessSig)
		}
		return nil
	case s.inGrace(r, now):
		r.graceUsed = true
		put(t, s.rows[refreshKind], signature, r)
		return nil
	default:
		return fosite.ErrNotFound
	}
}

// RevokeRefreshToken deactivates every refresh token of the request and
// takes away the grace of rotated ones, whether or not it has run out yet
// (the PostgreSQL backend must, for processes whose clocks differ; this one
// follows it). A rotated token keeps its deactivation time.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	now := s.clockNow()
	m := s.rows[refreshKind]
	for sig, r := range m {
		if r.rec.RequestID == requestID && (r.active || !r.graceUsed) {
			r.active, r.graceUsed = false, true
			if r.deactivatedAt.IsZero() {
				r.deactivatedAt = now
			}
			put(t, m, sig, r)
		}
	}
	return nil
}

// RevokeAccessToken deletes every access token of the request.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	m := s.rows[accessKind]
	for sig, r := range m {
		if r.rec.RequestID == requestID {
			drop(t, m, sig)
		}
	}
	return nil
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.create(ctx, codeKind, signature, r, fosite.AuthorizeCode, "")
}

// GetAuthorizeCodeSession returns the request even for a used code: fosite
// needs it to revoke what the code issued.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, active, err := s.get(ctx, codeKind, signature, session)
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fosite.ErrInvalidatedAuthorizeCode
	}
	return req, nil
}

// InvalidateAuthorizeCodeSession marks the code used.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, signature string) error {
	t, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	r, ok := s.rows[codeKind][signature]
	if !ok {
		return fosite.ErrNotFound
	}
	// A disabled user's code is not exchanged; the user stays read-locked
	// until the exchange's transaction ends (people.go).
	if err := s.refuseDisabled("invalidate authorize code", r.rec.Subject); err != nil {
		return err
	}
	s.holdUser(t, r.rec.Subject)
	if !r.active {
		return fosite.ErrInvalidatedAuthorizeCode // used already: one exchange per code
	}
	r.active = false
	put(t, s.rows[codeKind], signature, r)
	return nil
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) CreatePKCERequestSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.create(ctx, pkceKind, signature, r, fosite.AuthorizeCode, "")
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) GetPKCERequestSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, _, err := s.get(ctx, pkceKind, signature, session)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) DeletePKCERequestSession(ctx context.Context, signature string) error {
	return s.remove(ctx, pkceKind, signature)
}

// CreateOpenIDConnectSession stores the request under the hash of the code:
// fosite hands over the raw authorization code here, not a signature.
func (s *Store) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.create(ctx, oidcKind, storage.HashKey(code), r, fosite.AuthorizeCode, "")
}

// GetOpenIDConnectSession decodes the stored session into the session of the
// request fosite passes in (the token request being served).
func (s *Store) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	var session fosite.Session
	if r != nil {
		session = r.GetSession()
	}
	req, _, err := s.get(ctx, oidcKind, storage.HashKey(code), session)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.remove(ctx, oidcKind, storage.HashKey(code))
}
