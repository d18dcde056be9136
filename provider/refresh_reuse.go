package provider

import (
	"context"
	"errors"

	"github.com/ory/fosite"
)

// reuseProbe notes, for one token request, the chain whose refresh token
// was presented again after it had been rotated or revoked.
type reuseProbe struct{ chainID string }

type reuseProbeKey struct{}

// reuseWatch is the store fosite composes. fosite recognises refresh-token
// reuse inside its refresh handler (storage answers the request with
// fosite.ErrInactiveToken) and revokes the chain there, returning only an
// invalid_grant; the chain's request ID never leaves it. reuseWatch notes
// that ID in the probe Token put in the context, so Token can record the
// event. Introspection and revocation read refresh tokens too, but their
// contexts carry no probe: only a refresh grant counts as reuse.
type reuseWatch struct {
	Store
	// gate caps the ID token of a code exchange (GetOpenIDConnectSession).
	gate chainGate
}

func (w reuseWatch) GetRefreshTokenSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	req, err := w.Store.GetRefreshTokenSession(ctx, signature, sess)
	if errors.Is(err, fosite.ErrInactiveToken) && req != nil {
		if p, ok := ctx.Value(reuseProbeKey{}).(*reuseProbe); ok {
			p.chainID = req.GetID()
		}
	}
	return req, err
}

// watchReuse returns ctx with a fresh probe, and a function that records
// the reuse, if any, once fosite has answered with err: the chain was
// revoked when fosite reports the inactive token (its handler only does
// after the revocation succeeded).
func (p *Provider) watchReuse(ctx context.Context) (context.Context, func(ar fosite.AccessRequester, err error)) {
	probe := &reuseProbe{}
	return context.WithValue(ctx, reuseProbeKey{}, probe), func(ar fosite.AccessRequester, err error) {
		if probe.chainID == "" || ar == nil || ar.GetClient() == nil {
			return
		}
		p.audit.RefreshReuse(ctx, ar.GetClient().GetID(), probe.chainID, errors.Is(err, fosite.ErrInactiveToken))
	}
}

// DeletePKCERequestSession keeps the PKCE row. fosite's PKCE handler
// deletes it while validating a code exchange, before the code is
// invalidated, so a concurrent exchange of the same code arriving just
// after was refused for missing PKCE data: an invalid_grant that left the
// winner's tokens valid although it was a second use of the code (RFC 6749
// §4.1.2 asks for their revocation; TestScanLoginCodeRace failed about one
// run in eight). Kept, the loser reaches the code's invalidation, waits for
// the winner's commit and is answered as a replay (codeReused). The code's
// single use is what gates the exchange; the janitor purges the row when
// the code expires.
func (w reuseWatch) DeletePKCERequestSession(context.Context, string) error { return nil }

// DeleteOpenIDConnectSession keeps the code's OIDC session row, as
// DeletePKCERequestSession keeps its PKCE row. fosite's OIDC handler
// deletes it when it signs the ID token, before the exchange is written
// (authcode.Defer): an exchange that then failed would leave its retry
// without the session, and without an ID token. The code's single use
// gates the session; the janitor purges the row when the code expires, and
// disabling or erasing the user deletes it.
func (w reuseWatch) DeleteOpenIDConnectSession(context.Context, string) error { return nil }
