package postgres

import (
	"context"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// PKCE requests and OpenID Connect sessions live exactly as long as the
// authorization code they belong to, so their rows carry the code's expiry.

// CreateAuthorizeCodeSession stores the request behind an authorization code
// signature, active until InvalidateAuthorizeCodeSession.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.create(ctx, authorizeCodes, signature, r, fosite.AuthorizeCode)
}

// GetAuthorizeCodeSession returns the request behind a code. For an
// invalidated code it returns the request and
// fosite.ErrInvalidatedAuthorizeCode, so fosite can revoke the tokens issued
// from it.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	if s.unsettled.has(unsettledCode(signature)) {
		return nil, errCodeUnsettled // not "used": the client was told to retry
	}
	req, active, err := s.get(ctx, authorizeCodes, signature, session)
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fosite.ErrInvalidatedAuthorizeCode
	}
	return req, nil
}

// InvalidateAuthorizeCodeSession marks an unused code used: fosite reads
// the code outside its transaction, so the update is conditional and the
// losers of concurrent exchanges get fosite.ErrInvalidatedAuthorizeCode
// (the row lock makes them wait for the winner). fosite.ErrNotFound if
// unknown. The code's user is read-locked (FOR SHARE) until the exchange's
// transaction ends, as a refresh rotation does, and a disabled user's code
// is not exchanged (storage.ErrUserDisabled): disabling (and erasing)
// waits for the exchange's tokens and deletes them.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, signature string) error {
	var c codeInvalidation
	if err := c.scan(s.db(ctx).QueryRow(ctx, invalidateCodeCTEs+invalidateCodeResult, signature)); err != nil {
		return fositeErr("invalidate authorize code", err)
	}
	if err := c.err("invalidate authorize code"); err != nil {
		return err
	}
	if st, inTx := txFrom(ctx); inTx {
		st.codes = append(st.codes, signature)
	}
	return nil
}

// CreatePKCERequestSession stores the PKCE request of a code signature.
func (s *Store) CreatePKCERequestSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.create(ctx, pkceRequests, signature, r, fosite.AuthorizeCode)
}

// GetPKCERequestSession returns the PKCE request of a code signature, or
// fosite.ErrNotFound.
func (s *Store) GetPKCERequestSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, _, err := s.get(ctx, pkceRequests, signature, session)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeletePKCERequestSession deletes the PKCE request of a code signature.
func (s *Store) DeletePKCERequestSession(ctx context.Context, signature string) error {
	return s.remove(ctx, pkceRequests, signature)
}

// fosite hands the OpenID Connect methods the raw authorization code; rows
// are keyed by storage.HashKey of it so the table never holds a usable code.

// CreateOpenIDConnectSession stores the request of the OpenID Connect
// session started with authorizeCode.
func (s *Store) CreateOpenIDConnectSession(ctx context.Context, authorizeCode string, r fosite.Requester) error {
	return s.create(ctx, oidcSessions, storage.HashKey(authorizeCode), r, fosite.AuthorizeCode)
}

// GetOpenIDConnectSession returns the request of the session started with
// authorizeCode, decoding its session into r's, or fosite.ErrNotFound.
func (s *Store) GetOpenIDConnectSession(ctx context.Context, authorizeCode string, r fosite.Requester) (fosite.Requester, error) {
	var session fosite.Session
	if r != nil {
		session = r.GetSession()
	}
	req, _, err := s.get(ctx, oidcSessions, storage.HashKey(authorizeCode), session)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeleteOpenIDConnectSession deletes the session started with authorizeCode.
func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, authorizeCode string) error {
	return s.remove(ctx, oidcSessions, storage.HashKey(authorizeCode))
}
