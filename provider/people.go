package provider

import (
	"context"
	"errors"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/storage"
)

// AccountStore is what the self-service account endpoints change.
type AccountStore interface {
	SetUserProfile(ctx context.Context, id string, p storage.ProfilePatch) (*storage.User, error)
	EraseUser(ctx context.Context, id string) error
}

// RecentLogin is how recent the login behind an access token must be for
// the token to delete its user's account: a stolen or long-lived token
// alone cannot erase anyone.
const RecentLogin = 10 * time.Minute

// ErrLoginNotRecent is a valid user token whose login (auth_time) is older
// than RecentLogin; the user must log in again (RFC 9470
// insufficient_user_authentication).
var ErrLoginNotRecent = errors.New("the login behind the access token is not recent enough")

// errUserDisabled answers any grant that would issue tokens to a disabled
// user.
func errUserDisabled(err error) error {
	return fosite.ErrInvalidGrant.WithHint("The user's account is disabled or was deleted.").WithWrap(err)
}

// userClaims sets the ID-token claims the granted scopes allow from the
// stored user: phone with scope phone, the profile with scope profile
// (OpenID Connect Core §5.1: updated_at in seconds). Claims the user no
// longer has are removed, so a refreshed ID token never repeats a cleared
// nickname.
func userClaims(claims *jwt.IDTokenClaims, scopes fosite.Arguments, u *storage.User) {
	if claims.Extra == nil {
		claims.Extra = map[string]interface{}{}
	}
	set := func(k string, v any, ok bool) {
		if ok {
			claims.Extra[k] = v
		} else {
			delete(claims.Extra, k)
		}
	}
	phone := scopes.Has(ScopePhone) && u.PhoneNumber != ""
	set("phone_number", u.PhoneNumber, phone)
	set("phone_number_verified", true, phone)
	profile := scopes.Has(ScopeProfile)
	set("nickname", u.Nickname, profile && u.Nickname != "")
	set("picture", u.Picture, profile && u.Picture != "")
	set("updated_at", u.ProfileUpdatedAt.Unix(), profile && !u.ProfileUpdatedAt.IsZero())
	if len(claims.Extra) == 0 {
		claims.Extra = nil
	}
}

// profileClaims are the userinfo claims of scope profile.
func profileClaims(claims map[string]any, u *storage.User) {
	if u.Nickname != "" {
		claims["nickname"] = u.Nickname
	}
	if u.Picture != "" {
		claims["picture"] = u.Picture
	}
	if !u.ProfileUpdatedAt.IsZero() {
		claims["updated_at"] = u.ProfileUpdatedAt.Unix()
	}
}

// userGate is a token-endpoint handler for refreshes, run after fosite's
// refresh handler has loaded the chain's session and chainGate has narrowed
// its scope: it renews the ID-token claims a refresh carries (phone,
// profile) from the stored user, so a refreshed ID token neither repeats
// what the user has since changed nor keeps claims a narrowed scope
// dropped, and refuses an erased user (the rotation refuses a disabled one
// under the user's row lock). The user is read only when the scope carries
// such claims: a plain refresh costs nothing more. A code exchange needs
// none of it: its claims were read when the code was issued, and the code's
// invalidation refuses a disabled user under the row lock.
type userGate struct {
	checkOnly
	users storage.UserStore
}

func (g userGate) CanHandleTokenEndpointRequest(_ context.Context, ar fosite.AccessRequester) bool {
	return ar.GetGrantTypes().ExactOne(grants.RefreshToken)
}

func (g userGate) HandleTokenEndpointRequest(ctx context.Context, ar fosite.AccessRequester) error {
	if !g.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	sess, ok := ar.GetSession().(*Session)
	if !ok || sess.Subject == "" {
		return nil
	}
	scopes := ar.GetGrantedScopes()
	if !scopes.Has(ScopePhone) && !scopes.Has(ScopeProfile) {
		// No user claims in this scope (a narrowed refresh may have
		// dropped them): none from the login either.
		userClaims(sess.IDTokenClaims(), scopes, &storage.User{})
		return nil
	}
	u, err := g.users.GetUser(ctx, sess.Subject)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if sess.Subject != sess.ClientID {
			return errUserDisabled(storage.ErrUserDisabled) // erased
		}
		return nil // a client_credentials subject is not a user
	case err != nil:
		return outage(fosite.ErrServerError.WithWrap(err))
	case u.Disabled():
		return errUserDisabled(storage.ErrUserDisabled)
	}
	userClaims(sess.IDTokenClaims(), scopes, u)
	return nil
}

// checkOnly is the part of fosite's TokenEndpointHandler shared by the
// handlers that only check and amend a grant fosite's own handlers run:
// they never skip client authentication and write no response.
type checkOnly struct{}

func (checkOnly) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

func (checkOnly) PopulateTokenEndpointResponse(context.Context, fosite.AccessRequester, fosite.AccessResponder) error {
	return nil
}

// Account is a user's account as their access token presents it, for the
// self-service endpoints: authenticated first (and rate-limited by
// subject), acted on after.
type Account struct {
	p        *Provider
	sub      string
	scopes   fosite.Arguments
	authTime time.Time
	// miniProgram: the token was issued to a mini-program (WeChat-code
	// grant client), not to a website.
	miniProgram bool
}

// Subject is the account's user.
func (a *Account) Subject() string { return a.sub }

// Account authenticates a user's access token for the account endpoints:
// a client's own token (client_credentials) has no account (ErrNotAUser).
func (p *Provider) Account(ctx context.Context, token string) (*Account, error) {
	ar, sess, err := p.bearer(ctx, token)
	if err != nil {
		return nil, err
	}
	u, err := p.users.GetUser(ctx, sess.Subject)
	if errors.Is(err, storage.ErrNotFound) {
		if sess.Subject == sess.ClientID {
			return nil, ErrNotAUser // a client's own token (client_credentials)
		}
		return nil, ErrTokenInactive // the user was erased since the token was read
	}
	if err != nil {
		return nil, outage(err)
	}
	if u.Disabled() {
		return nil, ErrTokenInactive
	}
	c, ok := ar.GetClient().(*storage.OAuthClient)
	mini := ok && c.Record.WeChatAppID != "" && c.GetGrantTypes().Has(grants.WeChatCode)
	return &Account{p: p, sub: u.ID, scopes: ar.GetGrantedScopes(), authTime: sess.IDTokenClaims().AuthTime, miniProgram: mini}, nil
}

// UpdateProfile applies a profile change, which needs the mini-program's
// own token with scope profile (a website holding a user's token must not
// rewrite what every other client shows), and returns the user's profile
// claims.
func (a *Account) UpdateProfile(ctx context.Context, patch storage.ProfilePatch) (map[string]any, error) {
	if !a.miniProgram {
		return nil, ErrNotAUser
	}
	if !a.scopes.Has(ScopeProfile) {
		return nil, ErrInsufficientScope
	}
	u, err := a.p.account.SetUserProfile(ctx, a.sub, patch)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrTokenInactive // erased meanwhile
	}
	if err != nil {
		return nil, outage(err)
	}
	claims := map[string]any{"sub": u.ID}
	profileClaims(claims, u)
	return claims, nil
}

// Delete erases the account. Only the mini-program's own token qualifies
// (a website holding a user's token must not erase the user's account),
// and only when its login is recent (RecentLogin).
func (a *Account) Delete(ctx context.Context) error {
	if !a.miniProgram {
		return ErrNotAUser
	}
	if a.authTime.IsZero() || a.p.now().Sub(a.authTime) > RecentLogin {
		return ErrLoginNotRecent
	}
	if err := a.p.account.EraseUser(ctx, a.sub); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return ErrTokenInactive // erased meanwhile
		}
		return outage(err)
	}
	return nil
}
