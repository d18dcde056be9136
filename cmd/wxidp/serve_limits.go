package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/wxidp/wxidp/provider"
	"github.com/wxidp/wxidp/ratelimit"
	"github.com/wxidp/wxidp/web"
)

// limitsConfig holds the rate-limit settings of serve. Rates are per second
// (failed authentications: per minute); a zero rate turns a limit off, so
// the zero value (what tests start from) limits nothing.
type limitsConfig struct {
	RedisURL     string
	RedisPrefix  string
	RedisTimeout time.Duration

	RateIP                float64
	RateIPBurst           int
	RateClient            float64
	RateClientBurst       int
	AuthFailures          int
	RateSubject           float64
	RateSubjectBurst      int
	RateInvalidToken      float64
	RateInvalidTokenBurst int
	RateWeChatAppID       float64
	RateWeChatAppIDBurst  int
	RateBadCodes          float64
	RateBadCodesBurst     int
	RateLoginTickets      float64
	RateLoginTicketsBurst int
}

// defaultLimits are the production defaults. One source address (a
// carrier NAT, or a mini-program's backend) can finish 50 simultaneous
// first logins (burst) and sustain 100 logins a second, with refreshes and
// userinfo calls besides; the appid budget sustains the same 100 logins a
// second and must stay below the app's WeChat quota (see docs/wechat-login.md).
func defaultLimits() limitsConfig {
	return limitsConfig{
		RedisPrefix: "wxidp:", RedisTimeout: ratelimit.DefaultRedisTimeout,
		RateIP: 200, RateIPBurst: 400,
		RateClient: 100, RateClientBurst: 200,
		AuthFailures: 20,
		RateSubject:  10, RateSubjectBurst: 20,
		RateInvalidToken: 10, RateInvalidTokenBurst: 50,
		RateWeChatAppID: 150, RateWeChatAppIDBurst: 300,
		// A real user rarely sends a rejected code; a NAT's worth of
		// users now and then still fits in the burst.
		RateBadCodes: 1, RateBadCodesBurst: 10,
		// Each scan-to-login page stores a ticket: an office behind one
		// address opening its logins at nine still fits.
		RateLoginTickets: 2, RateLoginTicketsBurst: 30,
	}
}

func addLimitFlags(fs *pflag.FlagSet, c *limitsConfig) {
	d := defaultLimits()
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis URL (redis://[:password@]host:port/db); when set, every rate limit is shared by all processes; unset, each process limits on its own")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", d.RedisPrefix, "prefix of the rate-limit keys in Redis (deployments sharing one Redis use different prefixes)")
	fs.DurationVar(&c.RedisTimeout, "redis-timeout", d.RedisTimeout, "bound on each Redis dial, read and write; past it the request is limited per process (fail open)")
	rate := func(dst *float64, burst *int, name string, def float64, defBurst int, what string) {
		fs.Float64Var(dst, name, def, what+"; 0 disables")
		fs.IntVar(burst, name+"-burst", defBurst, "burst above --"+name)
	}
	rate(&c.RateIP, &c.RateIPBurst, "rate-limit-ip", d.RateIP, d.RateIPBurst, "requests per second per source address (IPv6: per /64) to the token, revocation, introspection and userinfo endpoints")
	rate(&c.RateClient, &c.RateClientBurst, "rate-limit-client", d.RateClient, d.RateClientBurst, "token requests per second per confidential client, counted once it has authenticated")
	fs.IntVar(&c.AuthFailures, "rate-limit-auth-failures", d.AuthFailures, "failed client authentications per minute per (client_id, source address); past it that pair gets 429; 0 disables")
	rate(&c.RateSubject, &c.RateSubjectBurst, "rate-limit-subject", d.RateSubject, d.RateSubjectBurst, "bearer requests (userinfo) per second per verified token subject")
	rate(&c.RateInvalidToken, &c.RateInvalidTokenBurst, "rate-limit-invalid-token", d.RateInvalidToken, d.RateInvalidTokenBurst, "invalid bearer tokens per second per source address; past it that source's bearer requests get 429")
	rate(&c.RateWeChatAppID, &c.RateWeChatAppIDBurst, "rate-limit-wechat-appid", d.RateWeChatAppID, d.RateWeChatAppIDBurst, "WeChat-code logins per second per WeChat appid (checked before WeChat is called); keep below the app's WeChat quota")
	rate(&c.RateBadCodes, &c.RateBadCodesBurst, "rate-limit-bad-codes", d.RateBadCodes, d.RateBadCodesBurst, "rejected WeChat codes (unknown to WeChat, or already used) per second per source address; past it that source's logins get 429 before they spend the appid budget")
	rate(&c.RateLoginTickets, &c.RateLoginTicketsBurst, "rate-limit-login-tickets", d.RateLoginTickets, d.RateLoginTicketsBurst, "scan-to-login tickets (QR codes) created per second per source address; past it the login page answers 429")
	for flag, env := range map[string]string{
		"rate-limit-login-tickets": "WXIDP_RATE_LIMIT_LOGIN_TICKETS", "rate-limit-login-tickets-burst": "WXIDP_RATE_LIMIT_LOGIN_TICKETS_BURST",
		"redis-url": "WXIDP_REDIS_URL", "redis-prefix": "WXIDP_REDIS_PREFIX", "redis-timeout": "WXIDP_REDIS_TIMEOUT",
		"rate-limit-ip": "WXIDP_RATE_LIMIT_IP", "rate-limit-ip-burst": "WXIDP_RATE_LIMIT_IP_BURST",
		"rate-limit-client": "WXIDP_RATE_LIMIT_CLIENT", "rate-limit-client-burst": "WXIDP_RATE_LIMIT_CLIENT_BURST",
		"rate-limit-auth-failures": "WXIDP_RATE_LIMIT_AUTH_FAILURES",
		"rate-limit-subject":       "WXIDP_RATE_LIMIT_SUBJECT", "rate-limit-subject-burst": "WXIDP_RATE_LIMIT_SUBJECT_BURST",
		"rate-limit-invalid-token": "WXIDP_RATE_LIMIT_INVALID_TOKEN", "rate-limit-invalid-token-burst": "WXIDP_RATE_LIMIT_INVALID_TOKEN_BURST",
		"rate-limit-wechat-appid": "WXIDP_RATE_LIMIT_WECHAT_APPID", "rate-limit-wechat-appid-burst": "WXIDP_RATE_LIMIT_WECHAT_APPID_BURST",
		"rate-limit-bad-codes": "WXIDP_RATE_LIMIT_BAD_CODES", "rate-limit-bad-codes-burst": "WXIDP_RATE_LIMIT_BAD_CODES_BURST",
	} {
		bindEnv(fs, flag, env)
	}
}

// Limit names: metric labels, and part of every key.
const (
	limitSource       = "source"
	limitClient       = "client"
	limitAuthFailures = "auth_failures"
	limitSubject      = "subject"
	limitInvalidToken = "invalid_token"
	limitWeChatAppID  = "wechat_appid"
	limitBadCodes     = "bad_codes"
	limitLoginTickets = "login_tickets"
)

// limits is the wiring of the rate limits: one Throttle for the web and
// provider layers.
type limits struct {
	throttle *ratelimit.Throttle
	web      web.RateLimit
	provider *provider.Limits
	close    func()
}

// newLimits builds the throttle, on Redis when configured. Redis being
// down at start-up does not stop serve: the limits are per process until
// it answers. reg receives the throttle's metrics; onLockout (may be nil)
// learns of each failed-authentication lockout.
func newLimits(ctx context.Context, c limitsConfig, log *slog.Logger, reg prometheus.Registerer,
	onLockout func(ctx context.Context, clientID, source string)) (*limits, error) {
	l := &limits{close: func() {}}
	l.web = web.RateLimit{
		Source:       ratelimit.Limit{Name: limitSource, Rate: c.RateIP, Burst: c.RateIPBurst},
		InvalidToken: ratelimit.Limit{Name: limitInvalidToken, Rate: c.RateInvalidToken, Burst: c.RateInvalidTokenBurst},
		Subject:      ratelimit.Limit{Name: limitSubject, Rate: c.RateSubject, Burst: c.RateSubjectBurst},
		LoginTickets: ratelimit.Limit{Name: limitLoginTickets, Rate: c.RateLoginTickets, Burst: c.RateLoginTicketsBurst},
	}
	l.provider = &provider.Limits{
		Client:       ratelimit.Limit{Name: limitClient, Rate: c.RateClient, Burst: c.RateClientBurst},
		AuthFailures: ratelimit.PerMinute(limitAuthFailures, c.AuthFailures),
		WeChatAppID:  ratelimit.Limit{Name: limitWeChatAppID, Rate: c.RateWeChatAppID, Burst: c.RateWeChatAppIDBurst},
		BadCodes:     ratelimit.Limit{Name: limitBadCodes, Rate: c.RateBadCodes, Burst: c.RateBadCodesBurst},
		OnLockout:    onLockout,
	}
	var errs []error
	for _, lim := range []ratelimit.Limit{l.web.Source, l.web.InvalidToken, l.web.Subject, l.web.LoginTickets, l.provider.Client, l.provider.AuthFailures, l.provider.WeChatAppID, l.provider.BadCodes} {
		errs = append(errs, lim.Validate())
	}
	if c.AuthFailures < 0 {
		errs = append(errs, errors.New("WXIDP_RATE_LIMIT_AUTH_FAILURES cannot be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	opts := ratelimit.Options{Log: log}
	if c.RedisURL != "" {
		red, err := ratelimit.NewRedis(c.RedisURL, c.RedisPrefix, c.RedisTimeout)
		if err != nil {
			return nil, fmt.Errorf("WXIDP_REDIS_URL: %w", err)
		}
		l.close = func() { _ = red.Close() }
		opts.Shared, opts.Timeout = red, 2*c.RedisTimeout
		pctx, cancel := context.WithTimeout(ctx, 2*c.RedisTimeout)
		if err := red.Ping(pctx); err != nil {
			log.Warn("rate limits: Redis does not answer; limits are per process until it does", "err", err.Error())
		}
		cancel()
	}
	l.throttle = ratelimit.New(opts)
	suppressed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wxidp_auth_lockouts_suppressed_total",
		Help: "Failed-authentication lockouts not written to the audit trail because their client had reached provider.LockoutEventsPerClient events that minute.",
	})
	for _, c := range []prometheus.Collector{l.throttle, suppressed} {
		if err := reg.Register(c); err != nil {
			l.close()
			return nil, err
		}
	}
	l.provider.LockoutsSuppressed = suppressed
	l.web.Throttle, l.provider.Throttle = l.throttle, l.throttle
	return l, nil
}
