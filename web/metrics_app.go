package web

import (
	"net/http"
	"time"

	"github.com/ory/fosite"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/storage"
)

// tokenErrors are the error codes the token endpoint answers (RFC 6749
// §5.2, plus access_denied, server_error and temporarily_unavailable, which
// fosite and the WeChat grant use); any other is counted as "other".
var tokenErrors = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true, "unauthorized_client": true,
	"unsupported_grant_type": true, "invalid_scope": true, "access_denied": true,
	"server_error": true, "temporarily_unavailable": true,
}

// observeToken counts one token request: r's grant_type if it is one this
// server supports (else "other"), and "issued" or the error code.
func (m *Metrics) observeToken(r *http.Request, err error) {
	if m == nil {
		return
	}
	grant := "other"
	if g := r.PostForm.Get("grant_type"); isSupportedGrant(g) {
		grant = g
	}
	outcome := "issued"
	if err != nil {
		outcome = fosite.ErrorToRFC6749Error(err).ErrorField
		if !tokenErrors[outcome] {
			outcome = "other"
		}
	}
	m.tokens.WithLabelValues(grant, outcome).Inc()
}

func isSupportedGrant(g string) bool {
	for _, s := range grants.Supported() {
		if g == s {
			return true
		}
	}
	return false
}

// wechatOps are the WeChat operations the client performs.
var wechatOps = map[string]bool{"code2session": true, "stable_token": true, "phone_number": true, "wxacode": true}

// ObserveWeChat records one WeChat API request; it has the signature of
// wechat.Observer, whose errcode values already form a fixed set ("0", a
// known errcode, "other", "transport").
func (m *Metrics) ObserveWeChat(op, errcode string, d time.Duration) {
	if !wechatOps[op] {
		op = "other"
	}
	m.wechat.WithLabelValues(op, errcode).Observe(d.Seconds())
}

// PoolStats is a snapshot of the database connection pool, read at scrape
// time (storage/postgres.PoolStats has the same fields).
type PoolStats struct {
	AcquiredConns        int32
	IdleConns            int32
	TotalConns           int32
	MaxConns             int32
	AcquireCount         int64
	AcquireDuration      time.Duration
	EmptyAcquireCount    int64
	CanceledAcquireCount int64
}

// WithPoolStats exports the database pool's statistics, read from stats at
// each scrape.
func WithPoolStats(stats func() PoolStats) MetricsOption {
	return func(m *Metrics) { m.registry.MustRegister(poolCollector{stats}) }
}

var (
	poolAcquired = prometheus.NewDesc("wxidp_db_pool_acquired_connections", "Connections in use now.", nil, nil)
	poolIdle     = prometheus.NewDesc("wxidp_db_pool_idle_connections", "Open, idle connections now.", nil, nil)
	poolTotal    = prometheus.NewDesc("wxidp_db_pool_total_connections", "Open connections now (in use, idle or being opened).", nil, nil)
	poolMax      = prometheus.NewDesc("wxidp_db_pool_max_connections", "Configured maximum pool size.", nil, nil)
	poolAcquires = prometheus.NewDesc("wxidp_db_pool_acquires_total", "Connections acquired from the pool.", nil, nil)
	poolWait     = prometheus.NewDesc("wxidp_db_pool_acquire_duration_seconds_total", "Total time spent acquiring connections.", nil, nil)
	poolEmpty    = prometheus.NewDesc("wxidp_db_pool_empty_acquires_total", "Acquisitions that found no idle connection and had to wait or connect.", nil, nil)
	poolCanceled = prometheus.NewDesc("wxidp_db_pool_canceled_acquires_total", "Acquisitions given up before a connection came (deadline or cancellation).", nil, nil)
)

type poolCollector struct{ stats func() PoolStats }

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolAcquired, poolIdle, poolTotal, poolMax, poolAcquires, poolWait, poolEmpty, poolCanceled} {
		ch <- d
	}
}

func (p poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := p.stats()
	ch <- prometheus.MustNewConstMetric(poolAcquired, prometheus.GaugeValue, float64(s.AcquiredConns))
	ch <- prometheus.MustNewConstMetric(poolIdle, prometheus.GaugeValue, float64(s.IdleConns))
	ch <- prometheus.MustNewConstMetric(poolTotal, prometheus.GaugeValue, float64(s.TotalConns))
	ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(s.MaxConns))
	ch <- prometheus.MustNewConstMetric(poolAcquires, prometheus.CounterValue, float64(s.AcquireCount))
	ch <- prometheus.MustNewConstMetric(poolWait, prometheus.CounterValue, s.AcquireDuration.Seconds())
	ch <- prometheus.MustNewConstMetric(poolEmpty, prometheus.CounterValue, float64(s.EmptyAcquireCount))
	ch <- prometheus.MustNewConstMetric(poolCanceled, prometheus.CounterValue, float64(s.CanceledAcquireCount))
}

// KeyAges reports how long the active and next signing keys have held their
// state (keys.Manager).
type KeyAges interface {
	KeyAge(state storage.KeyState) (time.Duration, bool)
}

// WithKeyAges exports the signing keys' ages, read at each scrape, so an
// alert can catch a rotation that stopped happening.
func WithKeyAges(keys KeyAges) MetricsOption {
	return func(m *Metrics) { m.registry.MustRegister(keyAgeCollector{keys}) }
}

var keyAge = prometheus.NewDesc("wxidp_signing_key_age_seconds",
	"Time since the active key was activated, or the next key created.", []string{"state"}, nil)

type keyAgeCollector struct{ keys KeyAges }

func (keyAgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- keyAge }

func (k keyAgeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, state := range []storage.KeyState{storage.KeyActive, storage.KeyNext} {
		if age, ok := k.keys.KeyAge(state); ok {
			ch <- prometheus.MustNewConstMetric(keyAge, prometheus.GaugeValue, age.Seconds(), string(state))
		}
	}
}
