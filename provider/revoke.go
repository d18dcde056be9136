package provider

import (
	"context"
	"errors"
	"net/http"

	"github.com/ory/fosite"
)

// Revoke answers RFC 7009 (see revoke) under the failed-auth budget.
func (p *Provider) Revoke(ctx context.Context, r *http.Request) error {
	return p.limits.guardClientAuth(ctx, r, func() error { return p.revoke(ctx, r) })
}

// revoke answers RFC 7009: the token's whole grant is revoked when its own
// client asks; unknown tokens and other clients' tokens answer 200 and
// change nothing.
func (p *Provider) revoke(ctx context.Context, r *http.Request) error {
	return outage(p.oauth.NewRevocationRequest(ctx, r))
}

// WriteRevocationResponse writes Revoke's answer. fosite answers 200 to
// every error but invalid_request and invalid_client, its own
// temporarily_unavailable (a failed storage lookup) and server errors
// included: the client would then believe a token revoked that still
// works. Those are written as the errors they are.
func (p *Provider) WriteRevocationResponse(ctx context.Context, w http.ResponseWriter, err error) {
	if errors.Is(err, fosite.ErrTemporarilyUnavailable) || errors.Is(err, fosite.ErrServerError) || errors.Is(err, errThrottled) {
		p.oauth.WriteAccessError(ctx, w, nil, err)
		return
	}
	p.oauth.WriteRevocationResponse(ctx, w, err)
}
