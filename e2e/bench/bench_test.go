package bench_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/bench"
)

// TestSmoke runs every workload (a few seconds each at a small size) with
// round robin and ours (1 and 4 proxies) through real in-process proxies,
// and checks the harness end to end: every request is answered, the parity
// runs repeat, the report renders.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet and proxies")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var strategies []bench.Strategy
	for _, s := range bench.Strategies() {
		if s.Name == "round-robin" || s.Name == "ours" || s.Name == "ours ×4 proxies" {
			strategies = append(strategies, s)
		}
	}
	scs := bench.Scenarios(bench.Smoke)
	for i := range scs {
		// A second of simulated arrivals is enough to exercise the path.
		w := &scs[i].Workload
		n := 0
		for n < len(w.Requests) && w.Requests[n].At < time.Second {
			n++
		}
		w.Requests = w.Requests[:n]
	}
	rep, err := bench.Run(ctx, bench.Options{TimeScale: 0.1, Scenarios: scs, Strategies: strategies,
		ScrapeProxies: []int{1, 4}, ScrapeWindow: 300 * time.Millisecond, Repeats: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cells) != len(scs)*len(strategies) {
		t.Fatalf("%d cells", len(rep.Cells))
	}
	for _, c := range rep.Cells {
		s := c.Summary
		answered := 0
		for _, cc := range s.ByClass {
			answered += cc.OK + cc.Shed429
		}
		if s.Requests == 0 || answered != s.Requests {
			t.Errorf("%s/%s: %d of %d requests answered (ok or 429): %+v", c.Workload, c.Strategy, answered, s.Requests, s.ByClass)
		}
		if s.OK > 0 && (s.TTFT.P50 <= 0 || s.TokensPerSec <= 0) {
			t.Errorf("%s/%s: no latency measured: %+v", c.Workload, c.Strategy, s)
		}
	}
	if len(rep.Repeated) != len(bench.Repeats()) {
		t.Errorf("%d repeated comparisons, want %d", len(rep.Repeated), len(bench.Repeats()))
	}
	for _, rp := range rep.Repeated {
		if len(rp.Runs[0]) != 2 || len(rp.Runs[1]) != 2 {
			t.Errorf("%s: %d runs of %s, %d of %s, want 2 each", rp.Workload, len(rp.Runs[0]), rp.Strategies[0], len(rp.Runs[1]), rp.Strategies[1])
		}
	}
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	svg, _ := os.ReadFile(filepath.Join(dir, "ttft.svg"))
	if !strings.Contains(string(md), "## shared-prefix") || !strings.Contains(string(md), "## shared-prefix-saturated") ||
		!strings.Contains(string(md), "## 4 proxies vs 1 proxy") || !strings.Contains(string(svg), "<svg") {
		t.Fatalf("report incomplete:\n%s", md)
	}
	if len(rep.Ratios()) == 0 {
		t.Fatal("no ratios")
	}
}
