package provider

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/ratelimit"
	"github.com/wxidp/wxidp/storage"
)

// Throttler applies rate limits (ratelimit.Throttle).
type Throttler interface {
	Allow(ctx context.Context, l ratelimit.Limit, key string) ratelimit.Decision
	Check(ctx context.Context, l ratelimit.Limit, key string) ratelimit.Decision
	Spend(ctx context.Context, l ratelimit.Limit, key string) (exhausted bool)
}

// Limits throttle the token, introspection and revocation endpoints by
// what each request has proven, so nobody can spend someone else's budget:
// a confidential client's bucket is spent only once it has authenticated;
// failed authentications are counted per claimed client_id and source
// address (the source the web layer put in the context, see
// ratelimit.WithSource), so failures from one address lock out only that
// address; and the WeChat-code grant spends its appid's budget just
// before WeChat is called, so WeChat's quota for the app is never reached
// through wxidp. A nil *Limits limits nothing.
type Limits struct {
	Throttle Throttler
	// Client: token requests per authenticated confidential client.
	Client ratelimit.Limit
	// AuthFailures: failed client authentications per (client_id, source);
	// once spent, that pair is refused before any work.
	AuthFailures ratelimit.Limit
	// WeChatAppID: WeChat-code logins per WeChat appid.
	WeChatAppID ratelimit.Limit
	// OnLockout, when set, learns of each (client_id, source) pair whose
	// failures have just spent AuthFailures (once per lockout, across
	// processes when the buckets are shared).
	OnLockout func(ctx context.Context, clientID, source string)
}

// errThrottled is a rate-limit refusal in RFC 6749 §5.2 shape; the web
// layer sets Retry-After from the ratelimit.Refusal it wraps.
var errThrottled = &fosite.RFC6749Error{
	ErrorField:       "temporarily_unavailable",
	DescriptionField: "Too many requests. Retry later.",
	CodeField:        http.StatusTooManyRequests,
}

func refused(d ratelimit.Decision) error {
	return errThrottled.WithWrap(&ratelimit.Refusal{Decision: d})
}

// beforeClientAuth refuses a request whose (client_id, source) pair is
// locked out, before fosite looks the client up and hashes its secret.
func (l *Limits) beforeClientAuth(ctx context.Context, r *http.Request) error {
	if l == nil || l.Throttle == nil {
		return nil
	}
	if d := l.Throttle.Check(ctx, l.AuthFailures, failureKey(ctx, r)); !d.Allowed {
		return refused(d)
	}
	return nil
}

// afterClientAuth counts err when it is a failed client authentication
// (not an outage, which fosite also reports as invalid_client).
func (l *Limits) afterClientAuth(ctx context.Context, r *http.Request, err error) {
	if l == nil || l.Throttle == nil || !errors.Is(err, fosite.ErrInvalidClient) || errors.Is(err, storage.ErrUnavailable) {
		return
	}
	if l.Throttle.Spend(ctx, l.AuthFailures, failureKey(ctx, r)) && l.OnLockout != nil {
		l.OnLockout(ctx, claimedClientID(r), ratelimit.SourceOf(ctx))
	}
}

// authenticated spends the budgets of a request fosite has accepted, just
// before the expensive part (signing, calling WeChat).
func (l *Limits) authenticated(ctx context.Context, ar fosite.AccessRequester) error {
	if l == nil || l.Throttle == nil {
		return nil
	}
	client := ar.GetClient()
	if !client.IsPublic() {
		if d := l.Throttle.Allow(ctx, l.Client, client.GetID()); !d.Allowed {
			return refused(d)
		}
	}
	if c, ok := client.(*storage.OAuthClient); ok && c.Record.WeChatAppID != "" && ar.GetGrantTypes().ExactOne(GrantTypeWeChatCode) {
		if d := l.Throttle.Allow(ctx, l.WeChatAppID, c.Record.WeChatAppID); !d.Allowed {
			return refused(d)
		}
	}
	return nil
}

// guardClientAuth runs an endpoint that authenticates the client (and does
// the rest of its work in the same fosite call) under the failure budget.
func (l *Limits) guardClientAuth(ctx context.Context, r *http.Request, call func() error) error {
	if err := l.beforeClientAuth(ctx, r); err != nil {
		return err
	}
	err := call()
	l.afterClientAuth(ctx, r, err)
	return err
}

// Introspect answers RFC 7662 (see introspect) under the failed-auth budget.
func (p *Provider) Introspect(ctx context.Context, r *http.Request) (res *Introspection, err error) {
	err = p.limits.guardClientAuth(ctx, r, func() error {
		res, err = p.introspect(ctx, r)
		return err
	})
	return res, err
}

// Revoke answers RFC 7009 (see revoke) under the failed-auth budget.
func (p *Provider) Revoke(ctx context.Context, r *http.Request) error {
	return p.limits.guardClientAuth(ctx, r, func() error { return p.revoke(ctx, r) })
}

// failureKey is the bucket of failed authentications of the client a
// request names, from where it comes.
func failureKey(ctx context.Context, r *http.Request) string {
	id := claimedClientID(r)
	return strconv.Itoa(len(id)) + ":" + id + ratelimit.SourceOf(ctx)
}

// claimedClientID is the client a request names (HTTP Basic, else the
// form); unauthenticated, so only fit to pick a bucket.
func claimedClientID(r *http.Request) string {
	if user, _, ok := r.BasicAuth(); ok {
		if id, err := url.QueryUnescape(user); err == nil {
			return id
		}
		return user
	}
	return r.PostForm.Get("client_id")
}
