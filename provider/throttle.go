package provider

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/ratelimit"
	"github.com/wxidp/wxidp/storage"
)

// Throttler applies rate limits (ratelimit.Throttle).
type Throttler interface {
	Allow(ctx context.Context, l ratelimit.Limit, key string) ratelimit.Decision
	Check(ctx context.Context, l ratelimit.Limit, key string) ratelimit.Decision
	Spend(ctx context.Context, l ratelimit.Limit, key string) (exhausted bool)
	Reserve(ctx context.Context, l ratelimit.Limit, key string) (ratelimit.Decision, *ratelimit.Reservation)
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
	// BadCodes: WeChat codes rejected (WeChat answered 40029 or 40163, or
	// the code was already claimed) per source; once spent, that source's
	// logins are refused before they spend the appid's budget or reach
	// WeChat. A public client needs no secret, so without it one address
	// sending made-up codes would spend the whole appid budget and lock
	// every user of the mini-program out. It only looks before the call
	// and spends on rejection (not Reserve): a carrier NAT's concurrent
	// honest logins must not each hold one of its few tokens.
	BadCodes ratelimit.Limit
	// OnLockout, when set, learns of each (client_id, source) pair whose
	// failures have just spent AuthFailures (once per lockout, across
	// processes when the buckets are shared).
	OnLockout func(ctx context.Context, clientID, source string)
	// LockoutsSuppressed, when set, counts lockouts not reported because
	// their client had used up LockoutEventsPerClient
	// (wxidp_auth_lockouts_suppressed_total).
	LockoutsSuppressed interface{ Inc() }
}

// LockoutEventsPerClient caps the lockouts reported per client a minute,
// whatever their sources: the once-per-(client, source) rule alone lets
// an attacker holding an IPv6 /48 (65,536 /64 sources) write 65,536 audit
// rows a minute about one client. Ten show an attack as plainly; the rest
// are only counted (LockoutsSuppressed). It caps audit writes only, never
// requests.
const LockoutEventsPerClient = 10

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

// maxClientIDLen is the longest client_id registration accepts
// (clientreg). A longer one names no client; refused at once, it never
// reaches a limiter key, the audit trail or a lookup.
const maxClientIDLen = 128

var errClientIDTooLong = fosite.ErrInvalidRequest.WithHint("The client_id is longer than any registered one.")

// beforeClientAuth reserves a failure token of the request's (client_id,
// source) pair before fosite looks the client up and hashes its secret,
// and refuses the request when there is none (the pair is locked out).
// Reserving, not merely looking, is what makes the budget hold under
// concurrency: of any number of simultaneous guesses, only as many as the
// pair has tokens reach the secret check. afterClientAuth keeps the token
// if authentication failed and refunds it otherwise. So a confidential
// client has at most AuthFailures' burst requests in flight through
// authentication per source address.
//
// A request without a secret (a public client's login) has nothing to
// guess and costs no hashing; it only looks at the budget, and its
// failure (an unknown or confidential client_id) is spent afterwards.
// Reserving for it would refuse a carrier NAT's concurrent first logins
// to one mini-program, all of which share one pair.
func (l *Limits) beforeClientAuth(ctx context.Context, r *http.Request) (*ratelimit.Reservation, error) {
	if len(claimedClientID(r)) > maxClientIDLen {
		return nil, errClientIDTooLong
	}
	if l == nil || l.Throttle == nil {
		return nil, nil
	}
	if !presentsSecret(r) {
		if d := l.Throttle.Check(ctx, l.AuthFailures, failureKey(ctx, r)); !d.Allowed {
			return nil, refused(d)
		}
		return nil, nil
	}
	d, rv := l.Throttle.Reserve(ctx, l.AuthFailures, failureKey(ctx, r))
	if !d.Allowed {
		return nil, refused(d)
	}
	return rv, nil
}

// presentsSecret reports whether r carries a client secret to check.
func presentsSecret(r *http.Request) bool {
	if _, secret, ok := r.BasicAuth(); ok {
		return secret != ""
	}
	return r.PostForm.Get("client_secret") != ""
}

// afterClientAuth keeps the reserved token when err is a failed client
// authentication (not an outage, which fosite also reports as
// invalid_client) and gives it back otherwise. The failure that took the
// pair's last token starts a lockout, reported to OnLockout at most once
// per lockout window (the time the budget takes to refill) and only for a
// client that exists: each refill lets one more failure empty the bucket
// again, and client_ids nobody registered are anyone's to invent, so
// neither may turn into a stream of audit rows. Nor may many sources:
// a client's reports are capped at LockoutEventsPerClient a minute.
func (l *Limits) afterClientAuth(ctx context.Context, r *http.Request, rv *ratelimit.Reservation, err error) {
	if l == nil || l.Throttle == nil {
		return
	}
	if !errors.Is(err, fosite.ErrInvalidClient) || errors.Is(err, storage.ErrUnavailable) {
		rv.Refund(ctx)
		return
	}
	// Reserved: the failure was already counted; else count it now.
	lockout := rv != nil && rv.Last
	if rv == nil {
		lockout = l.Throttle.Spend(ctx, l.AuthFailures, failureKey(ctx, r))
	}
	if !lockout || l.OnLockout == nil || errors.Is(err, fosite.ErrNotFound) {
		return
	}
	if !l.Throttle.Allow(ctx, lockoutEvents(l.AuthFailures), failureKey(ctx, r)).Allowed {
		return // this pair's lockout was reported this window
	}
	id := claimedClientID(r)
	perClient := ratelimit.PerMinute("lockout_events_per_client", LockoutEventsPerClient)
	if !l.Throttle.Allow(ctx, perClient, id).Allowed {
		if l.LockoutsSuppressed != nil {
			l.LockoutsSuppressed.Inc()
		}
		return
	}
	l.OnLockout(ctx, id, ratelimit.SourceOf(ctx))
}

// lockoutEvents is the budget of lockout reports per (client_id, source):
// one per time the failure budget takes to refill whole.
func lockoutEvents(failures ratelimit.Limit) ratelimit.Limit {
	return ratelimit.Limit{Name: "auth_lockout_events", Rate: max(failures.Rate/float64(max(failures.Burst, 1)), 1.0/3600), Burst: 1}
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
	if c, ok := client.(*storage.OAuthClient); ok && c.Record.WeChatAppID != "" && ar.GetGrantTypes().ExactOne(grants.WeChatCode) {
		if d := l.Throttle.Check(ctx, l.BadCodes, ratelimit.SourceOf(ctx)); !d.Allowed {
			return refused(d)
		}
		if d := l.Throttle.Allow(ctx, l.WeChatAppID, c.Record.WeChatAppID); !d.Allowed {
			return refused(d)
		}
	}
	return nil
}

// issued charges a WeChat-code login that failed because its code was
// rejected (invalid_grant: WeChat did not know it, or it was already
// claimed) to its source's BadCodes budget.
func (l *Limits) issued(ctx context.Context, ar fosite.AccessRequester, err error) {
	if l == nil || l.Throttle == nil || ar == nil || !errors.Is(err, fosite.ErrInvalidGrant) || !ar.GetGrantTypes().ExactOne(grants.WeChatCode) {
		return
	}
	l.Throttle.Spend(ctx, l.BadCodes, ratelimit.SourceOf(ctx))
}

// guardClientAuth runs an endpoint that authenticates the client (and does
// the rest of its work in the same fosite call) under the failure budget.
func (l *Limits) guardClientAuth(ctx context.Context, r *http.Request, call func() error) error {
	rv, err := l.beforeClientAuth(ctx, r)
	if err != nil {
		return err
	}
	err = call()
	l.afterClientAuth(ctx, r, rv, err)
	return err
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
