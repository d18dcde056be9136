package provider

import (
	"context"
	"errors"
	"net/http"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/provider/grants"
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
	resp, err := p.oauth.NewAccessResponse(ctx, ar)
	p.limits.issued(ctx, ar, err)
	if err != nil {
		return ar, nil, outage(err)
	}
	return ar, resp, nil
}
