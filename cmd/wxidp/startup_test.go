package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

func TestStartupRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	dsn := migratedDB(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := map[string]struct {
		mutate func(*serveConfig)
		want   string
	}{
		"short secret":        {func(c *serveConfig) { c.Secrets = "too-short" }, "at least 32 bytes"},
		"short second secret": {func(c *serveConfig) { c.Secrets = testSecret + ",short" }, "#2"},
		"no database":         {func(c *serveConfig) { c.DatabaseURL = "" }, "WXIDP_DATABASE_URL"},
		"no secrets":          {func(c *serveConfig) { c.Secrets = "" }, "WXIDP_SECRETS"},
		"no admin token":      {func(c *serveConfig) { c.AdminToken = "" }, "WXIDP_ADMIN_TOKEN"},
		"bad ttl":             {func(c *serveConfig) { c.AccessTokenTTL = 0 }, "positive"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(dsn)
			tc.mutate(&cfg)
			err := runServe(context.Background(), cfg, io.Discard, quiet)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "too-short") {
				t.Error("error message leaks the secret")
			}
		})
	}
	t.Run("wrong secret for stored key", func(t *testing.T) {
		t.Parallel()
		dsn := migratedDB(t)
		startServer(t, testConfig(dsn)).stop()
		cfg := testConfig(dsn)
		cfg.Secrets = strings.Repeat("z", 32)
		err := runServe(context.Background(), cfg, io.Discard, quiet)
		if err == nil || !strings.Contains(err.Error(), "lacks a secret still in use") || !strings.Contains(err.Error(), "signing_key") {
			t.Fatalf("got %v, want a refusal naming the signing keys", err)
		}
	})
	t.Run("schema missing", func(t *testing.T) {
		t.Parallel()
		err := runServe(context.Background(), testConfig(postgrestest.DSN(t)), io.Discard, quiet)
		if err == nil || !strings.Contains(err.Error(), "migrate up") {
			t.Fatalf("got %v, want a hint to run migrate up", err)
		}
	})
}

// TestConcurrentFirstStart: two deployments racing on one empty database
// both migrate and serve, and exactly one signing key exists afterwards.
func TestConcurrentFirstStart(t *testing.T) {
	t.Parallel()
	dsn := postgrestest.DSN(t)
	var wg sync.WaitGroup
	servers := make([]*server, 2)
	for i := range servers {
		wg.Go(func() {
			if err := runMigrate(context.Background(), dsn, "up", io.Discard); err != nil {
				t.Errorf("migrate: %v", err)
				return
			}
			servers[i] = startServer(t, testConfig(dsn))
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	pool, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	list, err := postgres.New(pool).ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].State == list[1].State {
		t.Fatalf("%d signing keys after two concurrent first starts, want one active and one next", len(list))
	}
	a, b := fetchJWKS(t, servers[0].issuer), fetchJWKS(t, servers[1].issuer)
	if strings.Join(kids(a), ",") != strings.Join(kids(b), ",") {
		t.Fatal("the two processes publish different keys")
	}
	var out bytes.Buffer
	if err := runMigrate(context.Background(), dsn, "status", &out); err != nil || !strings.Contains(out.String(), "applied") {
		t.Fatalf("migrate status: %v\n%s", err, out.String())
	}
}

// TestDevMode: `serve --dev` needs nothing else, prints its credentials
// once, and they work.
func TestDevMode(t *testing.T) {
	t.Parallel()
	pub, _ := net.Listen("tcp", "127.0.0.1:0")
	adm, _ := net.Listen("tcp", "127.0.0.1:0")
	cfg := serveConfig{Dev: true, AccessTokenTTL: 15 * 60e9, RefreshTokenTTL: 60 * 60e9, IDTokenTTL: 60 * 60e9, KeyReload: 60e9, JWKSMaxAge: 600e9, WeChatTimeout: 5e9, DatabaseTimeout: 5e9, WeChatAPIBase: defaultWeChatAPIBase,
		Issuer: "http://" + pub.Addr().String(), AdminAddr: adm.Addr().String(), publicLn: pub, adminLn: adm}
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, &out, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	srv := &server{issuer: cfg.Issuer, admin: "http://" + adm.Addr().String()}
	waitUp(t, srv.issuer)
	find := func(label string) string {
		m := regexp.MustCompile(label + `:\s+(\S+)`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("dev output lacks %q:\n%s", label, out.String())
		}
		return m[1]
	}
	adminToken, secret := find("admin token"), find("demo secret")
	if status, _ := srv.adminJSON(t, "GET", "/admin/clients", adminToken, nil); status != 200 {
		t.Fatalf("printed admin token rejected: %d", status)
	}
	status, _, body := srv.postToken(t, "demo", secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
	if status != 200 {
		t.Fatalf("demo client: %d %v", status, body)
	}
}

// TestEveryFlagHasAnEnvironmentVariable: the design promises one for each
// server setting, and none for a client's fields, which come from flags only.
func TestEveryFlagHasAnEnvironmentVariable(t *testing.T) {
	t.Parallel()
	clientFields := 0
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{cmd.LocalNonPersistentFlags(), cmd.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if f.Name == "help" || f.Name == "dev" {
					return
				}
				if len(f.Annotations[argumentAnnotation]) > 0 {
					clientFields++
					if len(f.Annotations[envAnnotation]) > 0 || strings.Contains(f.Usage, "(env ") {
						t.Errorf("%s --%s is an argument (client field, audit query) but has an environment variable", cmd.CommandPath(), f.Name)
					}
					return
				}
				if len(f.Annotations[envAnnotation]) == 0 || !strings.Contains(f.Usage, "(env WXIDP_") {
					t.Errorf("%s --%s has no environment variable", cmd.CommandPath(), f.Name)
				}
			})
		}
		for _, c := range cmd.Commands() {
			walk(c)
		}
	}
	walk(newRootCmd())
	if clientFields == 0 {
		t.Error("no flag is marked as an argument: clients create/update lost their exemption")
	}
}
