package provider

import (
	"context"
	"errors"
	"net/http"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/provider/authcode"
	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/storage"
)

// Token runs the token endpoint: authenticates the client, applies the
// grant's rules and issues tokens. Errors are fosite RFC6749 errors.
func (p *Provider) Token(ctx context.Context, r *http.Request) (fosite.AccessRequester, fosite.AccessResponder, error) {
	sess := NewSession()
	ctx, reused := p.watchReuse(ctx)
	rv, err := p.limits.beforeClientAuth(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	ar, err := p.oauth.NewAccessRequest(ctx, r, sess)
	reused(ar, err)
	p.limits.afterClientAuth(ctx, r, rv, err)
	err = outage(err)
	if ar == nil && errors.Is(err, fosite.ErrInvalidRequest) {
		// fosite answers a grant no handler claims with a bare
		// invalid_request (and no request); RFC 6749 §5.2 names it.
		return nil, nil, fosite.ErrUnsupportedGrantType.WithHint("The grant_type is not supported by this server.")
	}
	if err != nil {
		return ar, nil, err
	}
	if ar.GetGrantTypes().ExactOne(grants.ClientCredentials) {
		grantClientCredentials(ar, sess)
	}
	// Authenticated: now the client's budgets, before signing or WeChat.
	if err := p.limits.authenticated(ctx, ar); err != nil {
		return ar, nil, err
	}
	if ar.GetGrantTypes().ExactOne(grants.AuthorizationCode) {
		ctx = authcode.Defer(ctx) // the exchange is written last
	}
	resp, err := p.oauth.NewAccessResponse(ctx, ar)
	if err == nil && authcode.Unwritten(ctx) {
		err = fosite.ErrServerError.WithDebug("a code exchange was answered but not written")
	}
	p.limits.issued(ctx, ar, err)
	if errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		return ar, nil, p.codeReused(ctx, ar)
	}
	if errors.Is(err, storage.ErrUserDisabled) {
		// The refresh rotation refused: fosite calls any such error a
		// server error.
		return ar, nil, errUserDisabled(err)
	}
	if err != nil {
		return ar, nil, outage(err)
	}
	return ar, resp, nil
}

// codeReused answers the loser of concurrent exchanges of one
// authorization code (fosite calls it a server error): invalid_grant, and,
// as for a replay (RFC 6749 §4.1.2), the tokens issued with the code are
// revoked: the winner has committed by now (the loser waited on its row
// lock).
func (p *Provider) codeReused(ctx context.Context, ar fosite.AccessRequester) error {
	if err := p.revokeGrant(ctx, ar.GetID()); err != nil {
		return outage(fosite.ErrServerError.WithWrap(err))
	}
	return fosite.ErrInvalidGrant.WithHint("The authorization code has already been used.")
}

// revokeGrant revokes every token of grant id in one transaction, so an
// exchange being undone after an outage (storage/postgres/fastcode.go)
// meets both revocations or neither: never a revoked refresh token with
// its code made usable again.
func (p *Provider) revokeGrant(ctx context.Context, id string) error {
	tx, err := p.store.BeginTX(ctx)
	if err != nil {
		return err
	}
	if err := p.store.RevokeRefreshToken(tx, id); err != nil {
		return errors.Join(err, p.store.Rollback(tx))
	}
	if err := p.store.RevokeAccessToken(tx, id); err != nil {
		return errors.Join(err, p.store.Rollback(tx))
	}
	return p.store.Commit(tx)
}
