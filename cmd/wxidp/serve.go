package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/janitor"
	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/provider"
	"github.com/wxidp/wxidp/provider/clientreg"
	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/scan"
	"github.com/wxidp/wxidp/provider/wechat"
	"github.com/wxidp/wxidp/provider/wechat/wechatfake"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/web"
)

const defaultWeChatAPIBase = wechat.DefaultBaseURL

type serveConfig struct {
	Dev             bool
	DatabaseURL     string
	DatabaseTimeout time.Duration
	Issuer          string
	PublicAddr      string
	AdminAddr       string
	Secrets         string
	AdminToken      string
	WeChatAPIBase   string
	WeChatTimeout   time.Duration
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	IDTokenTTL      time.Duration
	// SessionMaxAge is the absolute lifetime of a login's token chain.
	SessionMaxAge time.Duration
	// LoginTicketTTL is how long a scan-to-login QR code may be scanned.
	LoginTicketTTL  time.Duration
	KeyReload       time.Duration
	KeyRotation     time.Duration
	JWKSMaxAge      time.Duration
	RefreshGrace    time.Duration
	JanitorEvery    time.Duration
	limitsConfig    // serve_limits.go
	TrustedProxies  []net.IPNet
	JanitorBatch    int
	InactiveKeep    time.Duration
	AuditKeep       time.Duration
	ShutdownTimeout time.Duration
	TLSCert, TLSKey string
	// publicLn and adminLn, when set, replace listening on the addresses
	// (tests listen on port 0 first, to know the issuer URL).
	publicLn, adminLn net.Listener
	// keySkew shortens the keys' clock-skew allowance in tests.
	keySkew time.Duration
	// memoryStore lets tests serve from the memory store (an empty
	// DatabaseURL) without the rest of --dev.
	memoryStore bool
	// now, when set, is the provider's clock (tests mint tokens that
	// expired long ago instead of waiting for them to).
	now func() time.Time
	// wrapStore, when set, wraps the store (tests inject storage faults).
	wrapStore func(storage.Store) storage.Store
	// tracer, when set, replaces the OTEL_* exporter (tests record spans).
	tracer trace.TracerProvider
}

func newServeCmd() *cobra.Command {
	var cfg serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the public and admin listeners",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			setGCDefault()
			return runServe(cmd.Context(), cfg, os.Stdout, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&cfg.Dev, "dev", false, "development mode: in-memory store, ephemeral key, printed admin token and demo client")
	addDatabaseFlag(cmd, &cfg.DatabaseURL)
	addDatabaseTimeoutFlag(cmd, &cfg.DatabaseTimeout)
	fs.StringVar(&cfg.Issuer, "issuer", "http://127.0.0.1:4444", "issuer URL (iss, discovery)")
	fs.StringVar(&cfg.PublicAddr, "public-addr", "127.0.0.1:4444", "public listener address")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:4445", "admin listener address")
	fs.StringVar(&cfg.Secrets, "secrets", "", "comma-separated system secrets, each >= 32 bytes; the first encrypts, all decrypt")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "bearer token guarding the admin listener")
	fs.StringVar(&cfg.WeChatAPIBase, "wechat-api-base", defaultWeChatAPIBase, "WeChat API base URL (with --dev and the default, a fake WeChat runs in-process)")
	fs.DurationVar(&cfg.WeChatTimeout, "wechat-timeout", wechat.DefaultTimeout, "timeout of each call to WeChat")
	fs.DurationVar(&cfg.AccessTokenTTL, "access-token-ttl", 15*time.Minute, "access token lifetime")
	fs.DurationVar(&cfg.RefreshTokenTTL, "refresh-token-ttl", 720*time.Hour, "refresh token lifetime")
	fs.DurationVar(&cfg.IDTokenTTL, "id-token-ttl", time.Hour, "ID token lifetime")
	fs.DurationVar(&cfg.SessionMaxAge, "session-max-age", provider.DefaultSessionMaxAge, "how long a login's token chain may live however often it is refreshed (clients may register less)")
	fs.DurationVar(&cfg.LoginTicketTTL, "login-ticket-ttl", 2*time.Minute, "how long a scan-to-login QR code may be scanned and approved")
	fs.DurationVar(&cfg.KeyReload, "key-reload-interval", 10*time.Second, "how often signing keys are reloaded from storage")
	fs.DurationVar(&cfg.KeyRotation, "key-rotation", 30*24*time.Hour, "rotate the signing key when the active one is this old; 0 disables")
	fs.DurationVar(&cfg.JWKSMaxAge, "jwks-max-age", 10*time.Minute, "how long verifiers may cache the JWKS; keys are published this long (plus the reload interval) before they sign")
	fs.DurationVar(&cfg.RefreshGrace, "refresh-grace", 0, "how long a rotated refresh token may be retried once (lost responses); 0 disables")
	fs.DurationVar(&cfg.JanitorEvery, "janitor-interval", 15*time.Minute, "how often serve purges expired rows (one process at a time); 0 disables")
	addJanitorFlags(cmd, &cfg.JanitorBatch, &cfg.InactiveKeep, &cfg.AuditKeep)
	addShutdownFlag(cmd, &cfg.ShutdownTimeout)
	addTLSFlags(cmd, &cfg.TLSCert, &cfg.TLSKey)
	addLimitFlags(fs, &cfg.limitsConfig)
	fs.IPNetSliceVar(&cfg.TrustedProxies, "trusted-proxies", nil, "CIDRs of load balancers whose X-Forwarded-For is trusted")
	for flag, env := range map[string]string{
		"trusted-proxies": "WXIDP_TRUSTED_PROXIES",
		"key-rotation":    "WXIDP_KEY_ROTATION", "jwks-max-age": "WXIDP_JWKS_MAX_AGE",
		"refresh-grace": "WXIDP_REFRESH_GRACE", "janitor-interval": "WXIDP_JANITOR_INTERVAL",
		"issuer": "WXIDP_ISSUER", "public-addr": "WXIDP_PUBLIC_ADDR", "admin-addr": "WXIDP_ADMIN_ADDR",
		"secrets": "WXIDP_SECRETS", "admin-token": "WXIDP_ADMIN_TOKEN", "wechat-api-base": "WXIDP_WECHAT_API_BASE", "wechat-timeout": "WXIDP_WECHAT_TIMEOUT",
		"access-token-ttl": "WXIDP_ACCESS_TOKEN_TTL", "refresh-token-ttl": "WXIDP_REFRESH_TOKEN_TTL",
		"id-token-ttl": "WXIDP_ID_TOKEN_TTL", "session-max-age": "WXIDP_SESSION_MAX_AGE", "login-ticket-ttl": "WXIDP_LOGIN_TICKET_TTL", "key-reload-interval": "WXIDP_KEY_RELOAD_INTERVAL",
	} {
		bindEnv(fs, flag, env)
	}
	return cmd
}

func addDatabaseFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVar(dst, "database-url", "", "PostgreSQL DSN")
	bindEnv(cmd.Flags(), "database-url", "WXIDP_DATABASE_URL")
}

func addDatabaseTimeoutFlag(cmd *cobra.Command, dst *time.Duration) {
	cmd.Flags().DurationVar(dst, "database-timeout", postgres.DefaultTimeout,
		"deadline of every database call, waiting for a pooled connection included; past it the caller gets 503")
	bindEnv(cmd.Flags(), "database-timeout", "WXIDP_DATABASE_TIMEOUT")
}

// runServe wires pool -> store -> keys -> provider -> web and serves until
// ctx ends. out receives the one-time dev credentials.
func runServe(ctx context.Context, cfg serveConfig, out io.Writer, log *slog.Logger) error {
	if cfg.Dev {
		if err := devDefaults(&cfg); err != nil {
			return err
		}
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	serveOpts, err := cfg.serveOptions(log)
	if err != nil {
		return err
	}
	log = web.ContextLogger(log) // request_id and trace_id on each line logged during a request
	tr, err := startTracing(ctx, cfg.tracer)
	if err != nil {
		return err
	}
	defer tr.close(log)
	secrets := splitSecrets(cfg.Secrets)
	cipher, err := keys.NewCipher(secrets)
	if err != nil {
		return fmt.Errorf("WXIDP_SECRETS: %w", err)
	}
	hasher, err := clientreg.NewSecretHasher(secrets)
	if err != nil {
		return fmt.Errorf("WXIDP_SECRETS: %w", err)
	}

	var store storage.Store
	if cfg.DatabaseURL == "" {
		store = memory.New(memory.WithRefreshGrace(cfg.RefreshGrace))
	} else {
		pool, err := postgres.OpenTimeout(ctx, cfg.DatabaseURL, cfg.DatabaseTimeout, tr.db()...)
		if err != nil {
			return fmt.Errorf("connect to database: %w", err)
		}
		defer pool.Close()
		pg := postgres.New(pool, postgres.WithRefreshGrace(cfg.RefreshGrace), postgres.WithTimeout(cfg.DatabaseTimeout),
			postgres.WithTracerProvider(tr.tp))
		// Stops the client cache's LISTEN connection (deferred after
		// pool.Close, so it runs first).
		defer pg.Close()
		store = pg
	}

	// nil for the memory store: it starts empty, so nothing in it was sealed
	// under an older secret (secrets.go).
	resealer, _ := store.(storage.Resealer)
	// Both checks run, so the operator learns everything missing at once.
	if err := errors.Join(checkSecretsInUse(ctx, resealer, cipher), checkClientSecretsInUse(ctx, store, hasher)); err != nil {
		return err
	}
	rec := audit.NewRecorder(store, log)
	km := keys.NewManager(store, cipher, keys.Options{
		JWKSMaxAge: cfg.JWKSMaxAge, ReloadEvery: cfg.KeyReload, RotateEvery: cfg.KeyRotation,
		TokenLifetime: max(cfg.AccessTokenTTL, cfg.IDTokenTTL), ClockSkew: cfg.keySkew, Log: log,
		OnScheduledRotation: rec.ScheduledRotation,
	})
	if err := km.Init(ctx); err != nil {
		return fmt.Errorf("load signing keys (has `wxidp migrate up` run?): %w", err)
	}
	// fosite mints refresh tokens under the first secret and still accepts
	// those minted under the older ones, so a rotation logs nobody out.
	globalSecrets := make([][]byte, len(secrets))
	for i, s := range secrets {
		if globalSecrets[i], err = keys.DeriveKey(s, "wxidp/fosite-global-secret/v1"); err != nil {
			return err
		}
	}
	var fake *wechatfake.Fake
	if cfg.Dev && cfg.WeChatAPIBase == defaultWeChatAPIBase {
		// Dev mode serves a fake WeChat from this process, so the whole
		// login works with no WeChat account.
		fake = wechatfake.New()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("fake wechat listener: %w", err)
		}
		go func() { _ = web.Serve(ctx, ln, fake, web.ServeOptions{}) }()
		cfg.WeChatAPIBase = "http://" + ln.Addr().String()
	}
	metrics := newMetrics(store, km)
	wx, err := wechat.New(cfg.WeChatAPIBase, wechat.WithLogger(log), wechat.WithTimeout(cfg.WeChatTimeout),
		wechat.WithObserver(metrics.ObserveWeChat), tr.wechat())
	if err != nil {
		return fmt.Errorf("WXIDP_WECHAT_API_BASE: %w", err)
	}
	lim, err := newLimits(ctx, cfg.limitsConfig, log, metrics.Registerer(), rec.Lockout)
	if err != nil {
		return err
	}
	defer lim.close()
	// Dev mode draws plain QR codes: the fake WeChat's codes open no
	// mini-program.
	var wxacode scan.WXACodeAPI = wx
	if cfg.Dev {
		wxacode = nil
	}
	csrfKey, err := keys.DeriveKey(secrets[0], "wxidp/login-csrf/v1")
	if err != nil {
		return err
	}
	prov, err := provider.New(provider.Config{
		Issuer:               cfg.Issuer,
		AccessTokenTTL:       cfg.AccessTokenTTL,
		RefreshTokenTTL:      cfg.RefreshTokenTTL,
		IDTokenTTL:           cfg.IDTokenTTL,
		SessionMaxAge:        cfg.SessionMaxAge,
		GlobalSecret:         globalSecrets[0],
		RotatedGlobalSecrets: globalSecrets[1:],
		Login:                provider.LoginConfig{TicketTTL: cfg.LoginTicketTTL},
	}, provider.Deps{Store: cfg.providerStore(store), Signer: km.Signer(), Hasher: hasher, WeChat: wx, Cipher: cipher, Log: log, Audit: rec,
		Limits: lim.provider, Now: cfg.now, WXACode: wxacode})
	if err != nil {
		return err
	}
	clients := clientreg.NewRegistry(store, hasher, cipher).LimitLifetimes(clientreg.Lifetimes{
		AccessToken: cfg.AccessTokenTTL, RefreshToken: cfg.RefreshTokenTTL, SessionMaxAge: cfg.sessionMaxAge(),
	})

	if cfg.Dev {
		if err := printDevCredentials(ctx, out, cfg, clients, fake); err != nil {
			return err
		}
	}

	public, err := web.NewPublic(web.PublicConfig{
		Metrics: metrics,
		Issuer:  cfg.Issuer, GrantTypes: grants.Supported(), Log: log, Tokens: prov, UserInfo: prov, Lifecycle: prov, Keys: km, Store: store,
		CORS:  store,
		Login: prov, Tickets: prov, CSRFKey: csrfKey, Vault: prov, Account: prov, Audit: rec,
		RateLimit:      lim.web,
		TrustedProxies: ipNets(cfg.TrustedProxies),
		// ctx ends (SIGTERM) before the listeners see it and shut down,
		// so /readyz is failing before they stop accepting.
		Draining: func() bool { return ctx.Err() != nil },
	})
	if err != nil {
		return err
	}
	admin, err := web.NewAdmin(web.AdminConfig{Token: cfg.AdminToken, Log: log, Clients: clients, Keys: km, Metrics: metrics,
		Audit: store, Recorder: rec, Users: store})
	if err != nil {
		return err
	}

	publicLn, adminLn, err := cfg.listen()
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { km.Run(gctx); return nil })
	if len(secrets) > 1 && resealer != nil {
		// A secret rotation is under way: move every stored secret to the
		// new one in the background; every process may do it (compare and
		// set), and the old secrets can go once one run reports success.
		g.Go(func() error {
			n, err := reencrypt(gctx, resealer, cipher, rec, audit.ActorSystem)
			if err != nil && gctx.Err() == nil {
				log.Error("re-encrypt stored secrets", "err", err, "done", n)
			} else if err == nil {
				log.Info("re-encrypted stored secrets under the first secret", "count", n)
			}
			return nil
		})
	}
	if cfg.JanitorEvery > 0 {
		j := janitor.New(store, janitor.Options{Batch: cfg.JanitorBatch, InactiveRetention: inactiveRetention(cfg.InactiveKeep, cfg.RefreshTokenTTL),
			AuditRetention: cfg.AuditKeep, Log: log})
		g.Go(func() error { j.Loop(gctx, cfg.JanitorEvery); return nil })
	}
	g.Go(announceShutdown(gctx, serveOpts.ShutdownTimeout, log))
	g.Go(func() error { return web.Serve(gctx, publicLn, tr.http(public), serveOpts) })
	g.Go(func() error { return web.Serve(gctx, adminLn, tr.http(admin), serveOpts) })
	log.Info("wxidp serving", "public", publicLn.Addr().String(), "admin", adminLn.Addr().String(), "issuer", cfg.Issuer, "dev", cfg.Dev, "tls", serveOpts.TLS != nil)
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return shutdownResult(err, serveOpts.ShutdownTimeout, log)
}

// checkClientSecretsInUse refuses to start when a confidential client's
// secret was hashed under a secret missing from WXIDP_SECRETS: that client
// could never authenticate again, and a hash cannot be re-keyed without the
// client secret. Clients are few (operator-registered), so it lists them.
func checkClientSecretsInUse(ctx context.Context, store interface {
	ListClients(context.Context) ([]storage.Client, error)
}, hasher *clientreg.SecretHasher) error {
	clients, err := store.ListClients(ctx)
	if err != nil {
		return fmt.Errorf("check stored client secrets (has `wxidp migrate up` run?): %w", err)
	}
	var stranded []string
	for _, c := range clients {
		if !c.Public() && !hasher.Knows(c.SecretHash) {
			stranded = append(stranded, c.ID)
		}
	}
	if len(stranded) == 0 {
		return nil
	}
	slices.Sort(stranded)
	return fmt.Errorf("WXIDP_SECRETS lacks the secret that hashed the client secrets of %s: keep the old secret after the new one "+
		"until each of these clients has a new client secret (`wxidp clients update ID --secret-file FILE`, see docs/keys.md)",
		strings.Join(stranded, ", "))
}

func (cfg *serveConfig) listen() (public, admin net.Listener, err error) {
	if cfg.publicLn != nil && cfg.adminLn != nil {
		return cfg.publicLn, cfg.adminLn, nil
	}
	if public, err = net.Listen("tcp", cfg.PublicAddr); err != nil {
		return nil, nil, fmt.Errorf("public listener: %w", err)
	}
	if admin, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		public.Close()
		return nil, nil, fmt.Errorf("admin listener: %w", err)
	}
	return public, admin, nil
}

func (cfg *serveConfig) validate() error {
	var missing []error
	if cfg.DatabaseURL == "" && !cfg.Dev && !cfg.memoryStore {
		missing = append(missing, errors.New("WXIDP_DATABASE_URL (--database-url) is required without --dev"))
	}
	if cfg.Secrets == "" {
		missing = append(missing, errors.New("WXIDP_SECRETS (--secrets) is required without --dev"))
	}
	if cfg.AdminToken == "" {
		missing = append(missing, errors.New("WXIDP_ADMIN_TOKEN (--admin-token) is required without --dev"))
	} else if len(cfg.AdminToken) < 16 {
		missing = append(missing, errors.New("WXIDP_ADMIN_TOKEN must be at least 16 characters"))
	}
	if cfg.JWKSMaxAge < time.Second {
		missing = append(missing, errors.New("the JWKS max age must be at least 1s"))
	}
	if cfg.LoginTicketTTL < 0 || cfg.LoginTicketTTL > time.Hour {
		missing = append(missing, errors.New("the login ticket lifetime must be between 0 (the default, 2m) and 1h"))
	}
	if cfg.RefreshGrace < 0 || cfg.JanitorEvery < 0 || cfg.KeyRotation < 0 {
		missing = append(missing, errors.New("the refresh grace and the janitor interval cannot be negative"))
	}
	if cfg.SessionMaxAge < 0 {
		missing = append(missing, errors.New("the session max age cannot be negative (0: the default, 90 days)"))
	}
	missing = append(missing, checkInactiveRetention(cfg.InactiveKeep, cfg.RefreshTokenTTL))
	if cfg.AccessTokenTTL <= 0 || cfg.RefreshTokenTTL <= 0 || cfg.IDTokenTTL <= 0 || cfg.KeyReload <= 0 || cfg.WeChatTimeout <= 0 || cfg.DatabaseTimeout <= 0 {
		missing = append(missing, errors.New("token lifetimes, the key reload interval, the database timeout and the WeChat timeout must be positive"))
	}
	missing = append(missing, validateShutdown(cfg.ShutdownTimeout), validateTLS(cfg.TLSCert, cfg.TLSKey))
	return errors.Join(missing...)
}

// devDefaults fills what dev mode generates: a fresh secret (so the key is
// ephemeral) and an admin token, unless given.
func devDefaults(cfg *serveConfig) error {
	if cfg.Secrets == "" {
		s, err := randomString(32)
		if err != nil {
			return err
		}
		cfg.Secrets = s
	}
	if cfg.AdminToken == "" {
		s, err := randomString(24)
		if err != nil {
			return err
		}
		cfg.AdminToken = s
	}
	return nil
}

func printDevCredentials(ctx context.Context, out io.Writer, cfg serveConfig, clients *clientreg.Registry, fake *wechatfake.Fake) error {
	demo, secret, err := clients.Create(ctx, clientreg.Metadata{
		ClientID:   "demo",
		ClientName: "Demo confidential client (dev mode)",
		GrantTypes: []string{"client_credentials"},
		Scope:      "read write",
		Audience:   []string{"https://api.example.com"},
	})
	if errors.Is(err, storage.ErrAlreadyExists) {
		secret = "(unchanged: the demo client already exists in this database)"
		demo, err = clients.Get(ctx, "demo")
	}
	if err != nil {
		return err
	}
	if _, err = fmt.Fprintf(out, `wxidp dev mode: nothing here is persistent unless WXIDP_DATABASE_URL is set.
  admin token:   %s
  demo client:   %s
  demo secret:   %s
Try:
  curl -s -u %s:%s -d grant_type=client_credentials -d scope=read %s/oauth2/token
  curl -s -H 'Authorization: Bearer %s' http://%s/admin/clients
`, cfg.AdminToken, demo.ID, secret, demo.ID, secret, cfg.Issuer, cfg.AdminToken, cfg.AdminAddr); err != nil {
		return err
	}
	if fake == nil {
		return nil
	}
	const appID, appSecret = "wxdemo0000000001", "dev-mode-app-secret"
	fake.AddApp(appID, appSecret)
	if _, _, err := clients.Create(ctx, clientreg.Metadata{
		ClientID:                "demo-miniprogram",
		ClientName:              "Demo mini-program (dev mode)",
		TokenEndpointAuthMethod: "none",
		Scope:                   "openid offline_access profile phone",
		WeChatAppID:             appID,
		WeChatAppSecret:         appSecret,
	}); err != nil && !errors.Is(err, storage.ErrAlreadyExists) {
		return err
	}
	_, err = fmt.Fprintf(out, `Mini-program login against the fake WeChat at %[1]s (appid %[2]s):
  code=$(curl -s -d appid=%[2]s -d openid=o_demo_user %[1]s/_fake/login | sed 's/.*"code":"\([^"]*\)".*/\1/')
  curl -s -d grant_type=%[3]s -d client_id=demo-miniprogram -d "code=$code" -d 'scope=openid offline_access' %[4]s/oauth2/token
`, cfg.WeChatAPIBase, appID, grants.WeChatCode, cfg.Issuer)
	return err
}

func ipNets(in []net.IPNet) []*net.IPNet {
	out := make([]*net.IPNet, len(in))
	for i := range in {
		out[i] = &in[i]
	}
	return out
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sessionMaxAge is the server's session maximum age, the default when
// unset.
func (cfg *serveConfig) sessionMaxAge() time.Duration {
	if cfg.SessionMaxAge <= 0 {
		return provider.DefaultSessionMaxAge
	}
	return cfg.SessionMaxAge
}
