package provider

import (
	"context"

	"github.com/ory/fosite"
)

// ownGrantsOnly makes every token endpoint handler composed into fc answer
// only the requests it can handle. fosite (v0.49.0) asks each handler to
// populate the response of every token request, and its own handlers turn
// down a grant that is not theirs with errorsx.WithStack(ErrUnknownRequest):
// a stack trace captured and thrown away, five per WeChat login, 2 % of the
// server's CPU under load (docs/BENCHMARKS.md, "Where the time of a login
// goes"). HandleTokenEndpointRequest needs nothing: fosite asks
// CanHandleTokenEndpointRequest before it.
func ownGrantsOnly(fc *fosite.Config) {
	for i, h := range fc.TokenEndpointHandlers {
		fc.TokenEndpointHandlers[i] = ownGrant{h}
	}
}

type ownGrant struct{ fosite.TokenEndpointHandler }

// PopulateTokenEndpointResponse answers fosite's "not mine" without asking
// the handler. Every handler composed here turns down such a request
// itself, with ErrUnknownRequest or (the PKCE handler) nil, which fosite
// treats alike.
func (h ownGrant) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	return h.TokenEndpointHandler.PopulateTokenEndpointResponse(ctx, ar, resp)
}
