package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything one invocation measured; --json writes it whole.
type report struct {
	Started time.Time   `json:"started"`
	Machine machine     `json:"machine"`
	Config  benchConfig `json:"config"`
	Runs    []runResult `json:"runs"`
	// Median is per scenario and per signer, of every run; only with
	// --runs > 1.
	Median *runResult `json:"median,omitempty"`
}

type machine struct {
	GOMAXPROCS    int    `json:"gomaxprocs"`
	NumCPU        int    `json:"num_cpu"`
	CPUModel      string `json:"cpu_model"`
	GoVersion     string `json:"go_version"`
	OS            string `json:"os"`
	Arch          string `json:"arch"`
	SignerBuild   string `json:"signer_build"`
	SignerVersion string `json:"signer_version"`
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute averages at the start:
	// anything else busy on the machine skews every figure.
	LoadAvg string `json:"load_average,omitempty"`
}

type benchConfig struct {
	Issuer      string   `json:"issuer"`
	Admin       string   `json:"admin"`
	FakeWeChat  string   `json:"fake_wechat"`
	Scenarios   []string `json:"scenarios"`
	Concurrency int      `json:"concurrency"`
	Duration    string   `json:"duration"`
	Warmup      string   `json:"warmup"`
	Runs        int      `json:"runs"`
	AuthCodes   int      `json:"authcode_codes"` // 0: sized from S each run
}

type runResult struct {
	Run      int       `json:"run,omitempty"` // 1-based; 0 in the median
	Ceilings []ceiling `json:"signing_ceilings"`
	// S is the fastest ceiling: the ratios' denominator.
	S         *ceiling         `json:"s,omitempty"`
	Scenarios []scenarioResult `json:"scenarios"`
}

type scenarioResult struct {
	Name       string  `json:"name"`
	Requests   int64   `json:"requests"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"requests_per_second"`
	LatencyMS  latency `json:"latency_ms"`
	// Errors counts failed requests by class: the HTTP status, "transport",
	// "timeout", "inactive" (introspection), "no refresh token".
	Errors     map[string]int64 `json:"errors,omitempty"`
	ErrorCount int64            `json:"error_count"`
	FirstError string           `json:"first_error,omitempty"`
	// Server figures come from its /metrics; absent when unreadable.
	ServerCPUPer1k *float64 `json:"server_cpu_seconds_per_1000_requests,omitempty"`
	ServerRSSBytes *float64 `json:"server_rss_bytes,omitempty"`
	BenchCPUPer1k  *float64 `json:"bench_cpu_seconds_per_1000_requests,omitempty"`
	RatioToS       *float64 `json:"ratio_to_s,omitempty"`
	Codes          *codes   `json:"authorization_codes,omitempty"`
	SetupError     string   `json:"setup_error,omitempty"`
}

type latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// codes tells how the authcode scenario's pre-minted codes went.
type codes struct {
	Minted      int     `json:"minted"`
	Used        int     `json:"used"`
	MintSeconds float64 `json:"mint_seconds"`
	// RanOut: the scenario stopped early for want of codes; its
	// throughput is over the time it ran.
	RanOut bool `json:"ran_out"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func ptr(v float64) *float64 { return &v }

// median returns the median of every measure over the runs, scenario by
// scenario and signer by signer; error counts are summed.
func median(runs []runResult) *runResult {
	out := &runResult{}
	var signers []string
	perSigner := map[string][]float64{}
	for _, r := range runs {
		for _, c := range r.Ceilings {
			if _, ok := perSigner[c.Signer]; !ok {
				signers = append(signers, c.Signer)
			}
			perSigner[c.Signer] = append(perSigner[c.Signer], c.PerSecond)
		}
	}
	for _, name := range signers {
		out.Ceilings = append(out.Ceilings, ceiling{Signer: name, PerSecond: med(perSigner[name])})
	}
	if s, ok := fastest(out.Ceilings); ok {
		out.S = &s
	}
	var names []string
	byName := map[string][]scenarioResult{}
	for _, r := range runs {
		for _, s := range r.Scenarios {
			if _, ok := byName[s.Name]; !ok {
				names = append(names, s.Name)
			}
			byName[s.Name] = append(byName[s.Name], s)
		}
	}
	for _, name := range names {
		out.Scenarios = append(out.Scenarios, medianScenario(byName[name]))
	}
	return out
}

func medianScenario(rs []scenarioResult) scenarioResult {
	m := scenarioResult{Name: rs[0].Name, Errors: map[string]int64{}}
	of := func(f func(scenarioResult) float64) float64 {
		vs := make([]float64, 0, len(rs))
		for _, r := range rs {
			if r.SetupError == "" {
				vs = append(vs, f(r))
			}
		}
		return med(vs)
	}
	optional := func(f func(scenarioResult) *float64) *float64 {
		vs := make([]float64, 0, len(rs))
		for _, r := range rs {
			if v := f(r); v != nil {
				vs = append(vs, *v)
			}
		}
		if len(vs) == 0 {
			return nil
		}
		return ptr(med(vs))
	}
	m.Requests = int64(of(func(r scenarioResult) float64 { return float64(r.Requests) }))
	m.Seconds = of(func(r scenarioResult) float64 { return r.Seconds })
	m.Throughput = of(func(r scenarioResult) float64 { return r.Throughput })
	m.LatencyMS.P50 = of(func(r scenarioResult) float64 { return r.LatencyMS.P50 })
	m.LatencyMS.P90 = of(func(r scenarioResult) float64 { return r.LatencyMS.P90 })
	m.LatencyMS.P99 = of(func(r scenarioResult) float64 { return r.LatencyMS.P99 })
	m.LatencyMS.Max = of(func(r scenarioResult) float64 { return r.LatencyMS.Max })
	m.ServerCPUPer1k = optional(func(r scenarioResult) *float64 { return r.ServerCPUPer1k })
	m.ServerRSSBytes = optional(func(r scenarioResult) *float64 { return r.ServerRSSBytes })
	m.BenchCPUPer1k = optional(func(r scenarioResult) *float64 { return r.BenchCPUPer1k })
	m.RatioToS = optional(func(r scenarioResult) *float64 { return r.RatioToS })
	for _, r := range rs {
		for k, v := range r.Errors {
			m.Errors[k] += v
		}
		m.ErrorCount += r.ErrorCount
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
		if m.SetupError == "" {
			m.SetupError = r.SetupError
		}
	}
	if len(m.Errors) == 0 {
		m.Errors = nil
	}
	return m
}

// med is the median (the mean of the middle two for an even count).
func med(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// writeText prints the header, each run's table when there are several,
// and the median (or the only run).
func (r *report) writeText(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "wxidp-bench %s  issuer %s\n", r.Started.Format(time.RFC3339), r.Config.Issuer)
	fmt.Fprintf(w, "machine: %s, GOMAXPROCS %d, %s %s/%s, bench signer build %q, load average %s\n",
		orUnknown(m.CPUModel), m.GOMAXPROCS, m.GoVersion, m.OS, m.Arch, m.SignerBuild, orUnknown(m.LoadAvg))
	fmt.Fprintf(w, "load: concurrency %d, %s per scenario after a %s warm-up, %d run(s)\n",
		r.Config.Concurrency, r.Config.Duration, r.Config.Warmup, r.Config.Runs)
	if len(r.Runs) > 1 {
		for _, run := range r.Runs {
			fmt.Fprintf(w, "\nRun %d\n", run.Run)
			run.writeTable(w)
		}
	}
	final := r.Median
	if final == nil && len(r.Runs) > 0 {
		final = &r.Runs[0]
	} else if final != nil {
		fmt.Fprintf(w, "\nMedian of %d runs (errors: all runs)\n", len(r.Runs))
	}
	if final != nil {
		fmt.Fprintln(w)
		final.writeTable(w)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func (run *runResult) writeTable(w io.Writer) {
	parts := make([]string, len(run.Ceilings))
	for i, c := range run.Ceilings {
		parts[i] = fmt.Sprintf("%s %s", c.Signer, thousands(c.PerSecond))
	}
	fmt.Fprintf(w, "RSA-2048 PKCS#1 v1.5 signatures/s, all cores: %s", strings.Join(parts, ", "))
	if run.S != nil {
		fmt.Fprintf(w, "  (S = %s, %s)", thousands(run.S.PerSecond), run.S.Signer)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	width := len("scenario")
	for _, s := range run.Scenarios {
		width = max(width, len(s.Name))
	}
	// Padded, the names read left-aligned in a right-aligned table.
	name := func(s string) string { return fmt.Sprintf("%-*s", width, s) }
	fmt.Fprintln(tw, name("scenario")+"\trequests\treq/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\terrors\tsrv CPU s/1k\tsrv RSS MB\tbench CPU s/1k\t×S\t")
	for _, s := range run.Scenarios {
		if s.SetupError != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\tsetup failed\t-\t-\t-\t-\t\n", name(s.Name))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\t\n", name(s.Name),
			thousands(float64(s.Requests)), thousands(s.Throughput),
			s.LatencyMS.P50, s.LatencyMS.P90, s.LatencyMS.P99, s.LatencyMS.Max,
			thousands(float64(s.ErrorCount)), opt(s.ServerCPUPer1k, 1, "%.3f"), opt(s.ServerRSSBytes, 1<<20, "%.0f"),
			opt(s.BenchCPUPer1k, 1, "%.3f"), opt(s.RatioToS, 1, "%.2f"))
	}
	_ = tw.Flush()
	for _, s := range run.Scenarios {
		if s.SetupError != "" {
			fmt.Fprintf(w, "  %s: setup failed: %s\n", s.Name, s.SetupError)
		}
		if s.ErrorCount > 0 {
			classes := slices.Sorted(maps.Keys(s.Errors))
			parts := make([]string, len(classes))
			for i, c := range classes {
				parts[i] = fmt.Sprintf("%s ×%d", c, s.Errors[c])
			}
			fmt.Fprintf(w, "  %s errors: %s; first: %s\n", s.Name, strings.Join(parts, ", "), s.FirstError)
			if s.Errors["429"] > 0 {
				fmt.Fprintf(w, "  %s: the server rate-limited the bench: run it with WXIDP_RATE_LIMIT_*=0 (docs/BENCHMARKS.md)\n", s.Name)
			}
		}
		if c := s.Codes; c != nil {
			fmt.Fprintf(w, "  %s: %d codes minted in %.1f s, %d used", s.Name, c.Minted, c.MintSeconds, c.Used)
			if c.RanOut {
				fmt.Fprintf(w, "; ran out after %.1f s of the measured window (raise --authcode-codes)", s.Seconds)
			}
			fmt.Fprintln(w)
		}
	}
}

func opt(v *float64, div float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v/div)
}

// thousands formats a count rounded to an integer with commas: 12,345.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (r *report) writeJSON(path string) error {
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}
