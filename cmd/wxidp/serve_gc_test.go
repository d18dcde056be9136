package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestServeGCPercent runs real `wxidp serve` processes: without GOGC the
// server collects garbage at 400 % growth (docs/BENCHMARKS.md, "Garbage
// collection"), and an operator's GOGC, "off" included, is left as set.
// The runtime's own gauge, go_gc_gogc_percent on /metrics, tells (off reads
// as 2^64-1).
func TestServeGCPercent(t *testing.T) {
	t.Parallel()
	bin := buildWxidp(t)
	base := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOGC=") })
	base = append(base, "WXIDP_DATABASE_URL="+migratedDB(t), "WXIDP_SECRETS="+testSecret, "WXIDP_ADMIN_TOKEN="+testAdminToken,
		"WXIDP_PUBLIC_ADDR=127.0.0.1:0", "WXIDP_ADMIN_ADDR=127.0.0.1:0")
	gauge := regexp.MustCompile(`(?m)^go_gc_gogc_percent (\S+)$`)
	for _, tc := range []struct{ name, env, want string }{
		{"default", "", "400"},
		{"GOGC=150", "GOGC=150", "150"},
		{"GOGC=100", "GOGC=100", "100"},
		{"GOGC=off", "GOGC=off", "1.8446744073709552e+19"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := base
			if tc.env != "" {
				env = append(slices.Clip(base), tc.env)
			}
			s := startProcess(t, bin, env)
			m := gauge.FindStringSubmatch(s.scrape(t))
			if m == nil {
				t.Fatal("no go_gc_gogc_percent on /metrics")
			}
			if m[1] != tc.want {
				t.Fatalf("go_gc_gogc_percent = %s, want %s", m[1], tc.want)
			}
		})
	}
}
