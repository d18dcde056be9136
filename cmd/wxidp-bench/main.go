package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wxidp/wxidp/provider/wechat/wechatfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "wxidp-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	Issuer, Admin, AdminToken string
	WeChatListen              string
	Scenarios                 []string
	Concurrency               int
	Duration, Warmup          time.Duration
	Runs                      int
	JSONFile                  string
	SignDuration              time.Duration
	AuthCodes                 int
	Timeout                   time.Duration
	// wechatLn, when set, replaces listening on WeChatListen (tests make
	// it first, to start the server with its URL).
	wechatLn net.Listener
}

func newRootCmd() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "wxidp-bench",
		Short: "Closed-loop load generator for a running wxidp server",
		Long: `wxidp-bench drives a running wxidp server with a fixed number of concurrent
clients, each sending its next request when the previous one is answered,
and reports throughput, latency, errors and the server's CPU and memory
(from its /metrics), next to the RSA-2048 signing ceiling of this machine.

It registers its own clients through the admin API and deletes them at the
end. The WeChat-code logins go to a fake WeChat served by this process: start
the server with WXIDP_WECHAT_API_BASE pointing at --wechat-listen, and with
the rate limits off (see docs/BENCHMARKS.md).`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.AdminToken == "" {
				o.AdminToken = os.Getenv("WXIDP_ADMIN_TOKEN")
			}
			_, err := run(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Issuer, "issuer", "http://127.0.0.1:4444", "public URL of the server under test")
	fs.StringVar(&o.Admin, "admin", "http://127.0.0.1:4445", "admin URL of the server under test")
	fs.StringVar(&o.AdminToken, "admin-token", "", "admin bearer token (default $WXIDP_ADMIN_TOKEN)")
	fs.StringVar(&o.WeChatListen, "wechat-listen", "127.0.0.1:0", "address of the fake WeChat this process serves (the server's WXIDP_WECHAT_API_BASE)")
	fs.StringArrayVar(&o.Scenarios, "scenario", []string{"all"}, "scenario to run, repeatable or comma-separated: all, "+scenarioNames())
	fs.IntVar(&o.Concurrency, "concurrency", 64, "concurrent closed-loop clients")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time per scenario")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured load before each scenario's measured time")
	fs.IntVar(&o.Runs, "runs", 1, "runs of every scenario, interleaved; with more than one, each run and the median are reported")
	fs.StringVar(&o.JSONFile, "json", "", "also write the whole result as JSON to this file")
	fs.DurationVar(&o.SignDuration, "sign-duration", 2*time.Second, "time each signer is measured for the signing ceiling")
	fs.IntVar(&o.AuthCodes, "authcode-codes", 0, "authorization codes minted (through scan-to-login) before each authcode run; the scenario stops early when they run out (0: enough for 0.3 × S, see autoCodes)")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Second, "timeout of each request")
	return cmd
}

func scenarioNames() string {
	s := ""
	for i, sc := range scenarios() {
		if i > 0 {
			s += ", "
		}
		s += sc.name
	}
	return s
}

func (o *options) check() error {
	var errs []error
	if o.Issuer == "" || o.Admin == "" {
		errs = append(errs, errors.New("--issuer and --admin are required"))
	}
	if o.AdminToken == "" {
		errs = append(errs, errors.New("the admin token is required: --admin-token or WXIDP_ADMIN_TOKEN"))
	}
	if o.Concurrency < 1 || o.Runs < 1 {
		errs = append(errs, errors.New("--concurrency and --runs must be at least 1"))
	}
	if o.Duration <= 0 || o.Warmup < 0 || o.SignDuration <= 0 || o.Timeout <= 0 {
		errs = append(errs, errors.New("--duration, --sign-duration and --timeout must be positive, --warmup not negative"))
	}
	if o.AuthCodes < 0 {
		errs = append(errs, errors.New("--authcode-codes cannot be negative"))
	}
	return errors.Join(errs...)
}

// run does the whole invocation: fake WeChat, clients, every run of every
// scenario, the report, and the clients' deletion however it ends.
func run(ctx context.Context, o options, stdout, stderr io.Writer) (*report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	scs, err := selectScenarios(o.Scenarios)
	if err != nil {
		return nil, err
	}
	ln := o.wechatLn
	if ln == nil {
		if ln, err = net.Listen("tcp", o.WeChatListen); err != nil {
			return nil, fmt.Errorf("fake WeChat: %w", err)
		}
	}
	wx := wechatfake.New()
	wxSrv := &http.Server{Handler: wx, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = wxSrv.Serve(ln) }()
	defer wxSrv.Close()
	wxURL := "http://" + ln.Addr().String()
	fmt.Fprintf(stderr, "fake WeChat at %s (the server must run with WXIDP_WECHAT_API_BASE=%s)\n", wxURL, wxURL)

	e := newEnv(o.Issuer, o.Admin, o.AdminToken, o.Concurrency, o.Timeout, wx, wxURL, stderr)
	defer e.transport.CloseIdleConnections()
	rep := &report{
		Started: time.Now().UTC(),
		Machine: machine{GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), CPUModel: cpuModel(),
			GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
			LoadAvg: loadAvg()},
		Config: benchConfig{Issuer: o.Issuer, Admin: o.Admin, FakeWeChat: wxURL, Concurrency: o.Concurrency,
			Duration: o.Duration.String(), Warmup: o.Warmup.String(), Runs: o.Runs, AuthCodes: o.AuthCodes},
	}
	rep.Machine.SignerBuild, rep.Machine.SignerVersion = signerBuild()
	for _, sc := range scs {
		rep.Config.Scenarios = append(rep.Config.Scenarios, sc.name)
	}
	if _, err := e.scrape(ctx); err != nil {
		return nil, fmt.Errorf("reading the server's metrics (is %s its admin listener, and the token right?): %w", o.Admin, err)
	}
	err = e.registerClients(ctx)
	defer func() {
		if derr := e.deleteClients(); derr != nil {
			fmt.Fprintf(stderr, "deleting the bench's clients: %v\n", derr)
		}
	}()
	if err != nil {
		return nil, err
	}
	for i := range o.Runs {
		r, err := runOnce(ctx, e, o, scs, i+1)
		if err != nil {
			return nil, err
		}
		rep.Runs = append(rep.Runs, r)
	}
	if o.Runs > 1 {
		rep.Median = median(rep.Runs)
	}
	rep.writeText(stdout)
	if o.JSONFile != "" {
		if err := rep.writeJSON(o.JSONFile); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// runOnce measures the signing ceilings, then every scenario in turn.
func runOnce(ctx context.Context, e *env, o options, scs []scenario, n int) (runResult, error) {
	r := runResult{Run: n}
	fmt.Fprintf(e.log, "run %d: signing ceilings (%s each)\n", n, o.SignDuration)
	cs, err := measureSigners(ctx, o.SignDuration)
	if err != nil {
		return r, err
	}
	r.Ceilings = cs
	if s, ok := fastest(cs); ok {
		r.S = &s
	}
	e.authCodes = o.AuthCodes
	if e.authCodes == 0 {
		e.authCodes = autoCodes(r.S, o.Warmup+o.Duration)
	}
	for _, sc := range scs {
		fmt.Fprintf(e.log, "run %d: %s\n", n, sc.name)
		res := runScenario(ctx, e, o, sc, r.S)
		if err := ctx.Err(); err != nil {
			return r, err
		}
		r.Scenarios = append(r.Scenarios, res)
	}
	return r, nil
}

// autoCodes is how many codes the authcode scenario needs to last the
// whole run at 0.3 × S: an exchange signs two tokens, so it cannot exceed
// S/2, and minting far more than it uses would double the setup time.
func autoCodes(s *ceiling, d time.Duration) int {
	const floor = 1000
	if s == nil {
		return floor
	}
	return max(floor, int(0.3*s.PerSecond*d.Seconds()))
}

func runScenario(ctx context.Context, e *env, o options, sc scenario, s *ceiling) scenarioResult {
	res := scenarioResult{Name: sc.name}
	mintStart := time.Now()
	doers, pool, err := sc.prepare(ctx, e, o.Concurrency)
	if err != nil {
		res.SetupError = err.Error()
		fmt.Fprintf(e.log, "  setup failed: %v\n", err)
		return res
	}
	if pool != nil {
		res.Codes = &codes{Minted: len(pool.codes), MintSeconds: time.Since(mintStart).Seconds()}
	}
	var (
		before, after       serverSample
		beforeErr, afterErr error
		benchBefore         float64
		benchAfter          float64
	)
	lr := closedLoop(ctx, doers, o.Warmup, o.Duration, loopHooks{
		atStart: func() { before, beforeErr = e.scrape(ctx); benchBefore = selfCPU() },
		atEnd:   func() { benchAfter = selfCPU(); after, afterErr = e.scrape(ctx) },
		firstError: func(oc outcome) {
			res.FirstError = oc.class + ": " + snippet(oc.body)
			fmt.Fprintf(e.log, "  first error: %s\n", res.FirstError)
		},
	})
	res.Requests = int64(lr.hist.n)
	res.Seconds = lr.window.Seconds()
	if res.Seconds > 0 {
		res.Throughput = float64(res.Requests) / res.Seconds
	}
	res.LatencyMS = latency{P50: ms(lr.hist.quantile(0.50)), P90: ms(lr.hist.quantile(0.90)),
		P99: ms(lr.hist.quantile(0.99)), Max: ms(lr.hist.max)}
	for _, v := range lr.errors {
		res.ErrorCount += v
	}
	if res.ErrorCount > 0 {
		res.Errors = lr.errors
	}
	if beforeErr == nil && afterErr == nil && lr.window > 0 {
		res.ServerRSSBytes = ptr(after.rssBytes)
		if res.Requests > 0 {
			res.ServerCPUPer1k = ptr((after.cpuSeconds - before.cpuSeconds) / float64(res.Requests) * 1000)
		}
	} else if err := errors.Join(beforeErr, afterErr); err != nil {
		fmt.Fprintf(e.log, "  %v\n", err)
	}
	if res.Requests > 0 && lr.window > 0 {
		res.BenchCPUPer1k = ptr((benchAfter - benchBefore) / float64(res.Requests) * 1000)
	}
	if s != nil {
		res.RatioToS = ptr(res.Throughput / s.PerSecond)
	}
	if res.Codes != nil {
		res.Codes.Used = pool.used()
		res.Codes.RanOut = lr.exhausted
	}
	return res
}
