package provider

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// AuthorizePath is the authorization endpoint's path on the public listener.
const AuthorizePath = "/oauth2/auth"

// AMRScan is the authentication method of a login approved by scanning a
// QR code with the mini-program (the ID token's amr).
const AMRScan = "wechat_scan"

// ErrBadRedirect is an authorization request whose client or redirect_uri
// cannot be trusted with a redirect: the answer is an error page, never a
// redirect (RFC 6749 §4.1.2.1).
var ErrBadRedirect = errors.New("the client or its redirect_uri is not registered")

// s256Challenge is an RFC 7636 S256 code_challenge: BASE64URL(SHA-256),
// 43 characters.
var s256Challenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// ParseAuthorize validates an authorization request in full before anyone
// is asked to scan: the client, the exact redirect_uri, the response type,
// state, scopes and audience (fosite), and PKCE (here, since fosite checks
// it only when the code is issued, which would be after the scan).
//
// An error wrapping ErrBadRedirect (the returned requester may be nil)
// must be shown as a page; any other error goes back to the client through
// WriteAuthorizeError.
func (p *Provider) ParseAuthorize(ctx context.Context, r *http.Request) (fosite.AuthorizeRequester, error) {
	if err := p.exactRedirect(ctx, r); err != nil {
		return nil, err
	}
	ar, err := p.oauth.NewAuthorizeRequest(ctx, r)
	if err != nil {
		if ar == nil || !ar.IsRedirectURIValid() {
			return ar, errors.Join(ErrBadRedirect, outage(err))
		}
		inQuery(ar)
		return ar, outage(err)
	}
	if m := ar.GetRequestForm().Get("response_mode"); m != "" && m != "query" {
		inQuery(ar)
		return ar, fosite.ErrUnsupportedResponseMode.WithHint("Only response_mode=query is supported.")
	}
	if err := checkPKCE(ar); err != nil {
		return ar, err
	}
	if err := checkPromptAndMaxAge(ar); err != nil {
		return ar, err
	}
	return ar, nil
}

// inQuery makes an error go back in the redirect's query whatever
// response_mode the request named: form_post would answer with fosite's
// page of inline script, which our CSP blocks.
func inQuery(ar fosite.AuthorizeRequester) {
	if a, ok := ar.(*fosite.AuthorizeRequest); ok {
		a.ResponseMode = fosite.ResponseModeQuery
	}
}

// exactRedirect requires a redirect_uri equal to one the client
// registered, character for character. fosite would also accept a missing
// redirect_uri when one is registered, and any port on a loopback one
// (RFC 8252 §7.3); a website's login has no use for either.
func (p *Provider) exactRedirect(ctx context.Context, r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return errors.Join(ErrBadRedirect, fosite.ErrInvalidRequest.WithHint("The request is malformed."))
	}
	id := r.Form.Get("client_id")
	if id == "" {
		return errors.Join(ErrBadRedirect, fosite.ErrInvalidRequest.WithHint("The 'client_id' parameter is missing."))
	}
	c, err := p.clients.GetClient(ctx, id)
	if errors.Is(err, storage.ErrUnavailable) {
		return errors.Join(ErrBadRedirect, outage(err))
	}
	if err != nil {
		return errors.Join(ErrBadRedirect, fosite.ErrInvalidClient.WithHint("The client is not registered."))
	}
	uri := r.Form.Get("redirect_uri")
	if uri == "" || !slices.Contains(c.GetRedirectURIs(), uri) {
		return errors.Join(ErrBadRedirect, fosite.ErrInvalidRequest.WithHint("The 'redirect_uri' is missing or not registered for this client."))
	}
	if !c.GetResponseTypes().Has("code") {
		return errors.Join(ErrBadRedirect, fosite.ErrUnauthorizedClient.WithHint("The client may not use the authorization code grant."))
	}
	return nil
}

// checkPKCE: S256 only, and required of public clients (they have no
// secret to bind the code to).
func checkPKCE(ar fosite.AuthorizeRequester) error {
	challenge := ar.GetRequestForm().Get("code_challenge")
	method := ar.GetRequestForm().Get("code_challenge_method")
	switch {
	case challenge == "" && method == "":
		if ar.GetClient().IsPublic() {
			return fosite.ErrInvalidRequest.WithHint("Public clients must send a PKCE code_challenge (S256).")
		}
		return nil
	case method != "S256":
		return fosite.ErrInvalidRequest.WithHint("The code_challenge_method must be S256.")
	case !s256Challenge.MatchString(challenge):
		return fosite.ErrInvalidRequest.WithHint("The code_challenge must be 43 base64url characters (S256).")
	}
	return nil
}

// knownPrompts are the OpenID Connect prompt values; none stands alone.
var knownPrompts = []string{"none", "login", "consent", "select_account"}

func checkPromptAndMaxAge(ar fosite.AuthorizeRequester) error {
	prompts := strings.Fields(ar.GetRequestForm().Get("prompt"))
	for _, p := range prompts {
		if !slices.Contains(knownPrompts, p) {
			return fosite.ErrInvalidRequest.WithHintf("Unknown prompt value '%s'.", truncate(p, 32))
		}
	}
	if slices.Contains(prompts, "none") && len(prompts) > 1 {
		return fosite.ErrInvalidRequest.WithHint("prompt=none cannot be combined with other values.")
	}
	if v := ar.GetRequestForm().Get("max_age"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 32); err != nil || n < 0 {
			return fosite.ErrInvalidRequest.WithHint("max_age must be a non-negative number of seconds.")
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// PromptNone reports whether the client asked not to interact with the
// user: with no usable login the answer is login_required.
func PromptNone(ar fosite.AuthorizeRequester) bool {
	return slices.Contains(strings.Fields(ar.GetRequestForm().Get("prompt")), "none")
}

// SessionSatisfies reports whether a browser login at authTime may answer
// ar without a new scan: not when the client asks for a fresh login
// (prompt=login, consent or select_account) or the login is older than
// max_age (max_age=0 always asks).
//
// Nor for a public client whose redirect_uri is not https (a native app's
// loopback or custom scheme): nothing proves such a client is who it says,
// so a login there is never repeated without the user (RFC 8252 §8.6,
// RFC 6749 §10.2).
//
// Nor when the login is as old as the session's maximum age (the client's
// own, or the server's): its tokens would be expired at birth.
func (p *Provider) SessionSatisfies(ar fosite.AuthorizeRequester, authTime, now time.Time) bool {
	if ar.GetClient().IsPublic() && (ar.GetRedirectURI() == nil || ar.GetRedirectURI().Scheme != "https") {
		return false
	}
	if !now.Before(authTime.Add(sessionMaxAge(p.cfg.SessionMaxAge, ar.GetClient()))) {
		return false
	}
	for _, p := range strings.Fields(ar.GetRequestForm().Get("prompt")) {
		if p != "none" {
			return false
		}
	}
	if v := ar.GetRequestForm().Get("max_age"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || now.Sub(authTime) > time.Duration(n)*time.Second {
			return false
		}
	}
	return true
}

// ErrLoginRequired is the answer to prompt=none without a usable login.
var ErrLoginRequired = fosite.ErrLoginRequired.WithHint("The user is not logged in here, and prompt=none forbids asking.")

// ErrAccessDenied is the answer when the user denied the login.
var ErrAccessDenied = fosite.ErrAccessDenied.WithHint("The user denied the login.")

// GrantAuthorization issues the authorization code for userID, who
// authenticated at authTime, for a request registered at requestedAt:
// every requested scope and audience the client may have is granted (the
// user's approval on the phone named them). The writes use the
// transaction in ctx, if any.
func (p *Provider) GrantAuthorization(ctx context.Context, ar fosite.AuthorizeRequester, userID string, authTime, requestedAt time.Time) (fosite.AuthorizeResponder, error) {
	user, err := p.users.GetUser(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fosite.ErrAccessDenied.WithHint("The user no longer exists.")
	}
	if err != nil {
		return nil, storageError(outage(err))
	}
	if user.Disabled() {
		return nil, fosite.ErrAccessDenied.WithHint("The user's account is disabled.")
	}
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	grantAudience(ar)
	sess := NewSession()
	sess.Subject = user.ID
	sess.ClientID = ar.GetClient().GetID()
	claims := sess.IDTokenClaims()
	claims.Subject = user.ID
	// Whole seconds, as the ID token carries them: fosite compares the two
	// (prompt=login needs auth_time >= the request), and a sub-second
	// request time would make a login within the same second look older.
	claims.AuthTime = authTime.UTC().Truncate(time.Second)
	claims.RequestedAt = requestedAt.UTC().Truncate(time.Second)
	claims.AuthenticationMethodsReferences = []string{AMRScan}
	userClaims(claims, ar.GetGrantedScopes(), user)
	resp, err := p.oauth.NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		return nil, outage(err)
	}
	return resp, nil
}

// WriteAuthorizeError redirects an error to the client (RFC 6749
// §4.1.2.1); only for a requester whose redirect_uri was validated.
func (p *Provider) WriteAuthorizeError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	p.oauth.WriteAuthorizeError(ctx, w, ar, err)
}

// WriteAuthorizeResponse redirects the code and state to the client.
func (p *Provider) WriteAuthorizeResponse(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, resp fosite.AuthorizeResponder) {
	p.oauth.WriteAuthorizeResponse(ctx, w, ar, resp)
}
