package storage

import (
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
	fstorage "github.com/ory/fosite/storage"
)

// FositeStore is every fosite storage interface the provider composes.
//
// Rules every backend follows (the conformance suite checks each):
//   - Get* of an unknown signature or code returns fosite.ErrNotFound.
//   - The request comes back whole: ID, RequestedAt (to the second), client
//     (as GetClient would return it), requested and granted scopes and audience,
//     form, and the session unmarshalled from JSON into the session value the
//     caller passed (which may be nil: then the session is left out);
//     GetOpenIDConnectSession decodes into requester.GetSession().
//   - GetAuthorizeCodeSession of an invalidated code returns the request AND
//     fosite.ErrInvalidatedAuthorizeCode.
//   - GetRefreshTokenSession of a deactivated token returns the request AND
//     fosite.ErrInactiveToken (fosite panics on a nil request there).
//   - RotateRefreshToken deactivates exactly the presented refresh token of
//     that request ID by a conditional update (zero rows, including a
//     request ID that does not match: fosite.ErrNotFound) and deletes the
//     access token that was issued with it; other tokens of the request stay.
//     If the token's subject is a disabled user it changes nothing and
//     returns storage.ErrUserDisabled; it read-locks the user until the
//     transaction ends, so disabling (or erasing) waits for the rotation's
//     new tokens.
//   - InvalidateAuthorizeCodeSession does the same for the code's user: a
//     disabled user's code stays unused (storage.ErrUserDisabled).
//   - Refresh grace period (a backend option, default 0): a refresh token
//     rotated less than the grace period ago, whose grace was not yet used,
//     reads as active (GetRefreshTokenSession returns it with a nil error)
//     and RotateRefreshToken of it succeeds once, marking the grace used
//     and deleting nothing; this lets a client that lost a response retry
//     once without the chain being revoked. A revoked token has no grace.
//   - RevokeRefreshToken(requestID) deactivates every refresh token of the
//     request; RevokeAccessToken(requestID) deletes every access token of it.
//     Neither fails when nothing matches.
//   - Delete* of an unknown signature returns nil.
//   - Every method uses the transaction BeginTX put in the context, so
//     Rollback undoes all of them; a serialization failure or deadlock is
//     returned as fosite.ErrSerializationFailure.
//   - ClientAssertionJWTValid returns fosite.ErrJTIKnown for a known,
//     unexpired jti; SetClientAssertionJWT drops expired jtis and returns
//     fosite.ErrJTIKnown for a known one.
//   - GetClient of an unknown client returns fosite.ErrNotFound; the client
//     it returns is an *OAuthClient.
type FositeStore interface {
	fosite.ClientManager
	oauth2.CoreStorage
	oauth2.TokenRevocationStorage
	openid.OpenIDConnectRequestStorage
	pkce.PKCERequestStorage
	fstorage.Transactional
}

// OAuthClient adapts a Client record to fosite's client interfaces, keeping
// the record so the provider can reach WeChat fields.
type OAuthClient struct {
	*fosite.DefaultOpenIDConnectClient
	Record *Client
}

// NewOAuthClient builds fosite's view of c. A client registered with no
// audience has itself as audience: tokens never carry an empty aud, and
// fosite's refresh handler re-checks the granted audience against this list.
//
// Only the authorization endpoint issues response types, and only "code",
// to clients registered for the authorization_code grant; every other
// client uses the token endpoint alone.
func NewOAuthClient(c *Client) *OAuthClient {
	aud := c.Audience
	if len(aud) == 0 {
		aud = []string{c.ID}
	}
	responseTypes := []string{}
	// The literal is grants.AuthorizationCode: storage imports nothing of
	// the provider's.
	if slices.Contains(c.GrantTypes, "authorization_code") {
		responseTypes = []string{"code"}
	}
	return &OAuthClient{
		DefaultOpenIDConnectClient: &fosite.DefaultOpenIDConnectClient{
			DefaultClient: &fosite.DefaultClient{
				ID:           c.ID,
				Secret:       c.SecretHash,
				RedirectURIs: c.RedirectURIs,
				GrantTypes:   c.GrantTypes,
				// "code" for authorization_code clients, else none.
				ResponseTypes: responseTypes,
				Scopes:        c.Scopes,
				Audience:      aud,
				Public:        c.Public(),
			},
			TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
		},
		Record: c,
	}
}

// GetEffectiveLifespan is fosite's per-client lifetime hook: the client's
// own access and refresh token lifetimes when shorter than the server's
// (fallback), whatever the grant. ID tokens keep the server's.
func (c *OAuthClient) GetEffectiveLifespan(_ fosite.GrantType, tt fosite.TokenType, fallback time.Duration) time.Duration {
	own := time.Duration(0)
	switch tt {
	case fosite.AccessToken:
		own = c.Record.AccessTokenTTL
	case fosite.RefreshToken:
		own = c.Record.RefreshTokenTTL
	}
	if own > 0 && (own < fallback || fallback <= 0) {
		return own
	}
	return fallback
}

// GetResponseTypes returns the response types as built: none for a client
// without the authorization_code grant. fosite's own reads an empty list as
// ["code"] (the OIDC registration default), and its authorization endpoint
// checks only this list, never the grant types, so it would issue codes to
// every client with a redirect URI.
func (c *OAuthClient) GetResponseTypes() fosite.Arguments {
	return fosite.Arguments(c.ResponseTypes)
}
