package provider

import (
	"context"
	"errors"
	"slices"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/wxidp/wxidp/storage"
)

// LogoutPath is RP-initiated logout's endpoint (OpenID Connect
// RP-Initiated Logout 1.0).
const LogoutPath = "/oauth2/logout"

// ErrBadLogout is a logout request that cannot be trusted with a redirect:
// the answer is a page.
var ErrBadLogout = errors.New("the logout request is invalid")

// Logout is a validated RP-initiated logout request.
type Logout struct {
	// Subject is the id_token_hint's sub; empty without a hint.
	Subject string
	// ClientID is the client asking (client_id, or the hint's audience).
	ClientID string
	// RedirectURI is the registered post_logout_redirect_uri to send the
	// browser back to; empty to show our own page.
	RedirectURI string
	State       string
}

// ParseLogout checks id_token_hint (our signature and issuer; expired is
// fine, as the spec allows), client_id (which must be among the hint's
// audience) and post_logout_redirect_uri (which must be registered by that
// client, exactly). Every failure wraps ErrBadLogout.
func (p *Provider) ParseLogout(ctx context.Context, hint, clientID, redirectURI, state string) (*Logout, error) {
	l := &Logout{ClientID: clientID, State: state}
	if hint != "" {
		tok, err := p.signer.Decode(ctx, hint)
		var ve *jwt.ValidationError
		if tok == nil || err != nil && !(errors.As(err, &ve) && ve.Errors == jwt.ValidationErrorExpired) {
			return nil, errors.Join(ErrBadLogout, errors.New("the id_token_hint is not an ID token of this server"))
		}
		iss, _ := tok.Claims["iss"].(string)
		sub, _ := tok.Claims["sub"].(string)
		aud := audience(tok.Claims["aud"])
		// An access token is a JWT we signed too; only an ID token names
		// the client it was issued to in aud.
		typ, _ := tok.Header["typ"].(string)
		if iss != p.cfg.Issuer || sub == "" || len(aud) == 0 || typ == "at+jwt" {
			return nil, errors.Join(ErrBadLogout, errors.New("the id_token_hint is not an ID token of this server"))
		}
		if l.ClientID == "" {
			l.ClientID = aud[0]
		} else if !slices.Contains(aud, l.ClientID) {
			return nil, errors.Join(ErrBadLogout, errors.New("the client_id is not the id_token_hint's audience"))
		}
		l.Subject = sub
	}
	if redirectURI == "" {
		return l, nil
	}
	if l.ClientID == "" {
		return nil, errors.Join(ErrBadLogout, errors.New("post_logout_redirect_uri needs client_id or id_token_hint"))
	}
	c, err := p.clients.GetClient(ctx, l.ClientID)
	if errors.Is(err, storage.ErrUnavailable) {
		return nil, outage(err)
	}
	if err != nil {
		if errors.Is(err, fosite.ErrNotFound) {
			return nil, errors.Join(ErrBadLogout, errors.New("the client is not registered"))
		}
		return nil, outage(err)
	}
	rec := c.(*storage.OAuthClient).Record
	if !slices.Contains(rec.PostLogoutRedirectURIs, redirectURI) {
		return nil, errors.Join(ErrBadLogout, errors.New("the post_logout_redirect_uri is not registered for this client"))
	}
	l.RedirectURI = redirectURI
	return l, nil
}

func audience(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return a
	}
	return nil
}
