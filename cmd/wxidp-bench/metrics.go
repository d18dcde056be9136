package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serverSample is what the server's own /metrics says about its process.
type serverSample struct {
	cpuSeconds float64 // process_cpu_seconds_total
	rssBytes   float64 // process_resident_memory_bytes
}

// scrape reads the server's /metrics on the admin listener.
func (e *env) scrape(ctx context.Context) (serverSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.admin+"/metrics", nil)
	if err != nil {
		return serverSample{}, err
	}
	req.Header.Set("Authorization", "Bearer "+e.adminToken)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := e.hc.Do(req)
	if err != nil {
		return serverSample{}, fmt.Errorf("server metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		return serverSample{}, fmt.Errorf("server metrics: HTTP %d: %s", resp.StatusCode, snippet(raw))
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (serverSample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return serverSample{}, fmt.Errorf("server metrics: %w", err)
	}
	var s serverSample
	cpu, ok := fams["process_cpu_seconds_total"]
	if !ok || len(cpu.GetMetric()) == 0 {
		return serverSample{}, fmt.Errorf("server metrics lack process_cpu_seconds_total")
	}
	s.cpuSeconds = cpu.GetMetric()[0].GetCounter().GetValue()
	rss, ok := fams["process_resident_memory_bytes"]
	if !ok || len(rss.GetMetric()) == 0 {
		return serverSample{}, fmt.Errorf("server metrics lack process_resident_memory_bytes")
	}
	s.rssBytes = rss.GetMetric()[0].GetGauge().GetValue()
	return s, nil
}

// selfCPU is the bench's own CPU time in seconds: it shares the machine
// with the server, so what it spends is not the server's to use.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// cpuModel is the first "model name" of /proc/cpuinfo ("" elsewhere).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg is the first three fields of /proc/loadavg ("" elsewhere).
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
