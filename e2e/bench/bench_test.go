package bench_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/bench"
	"github.com/infergate/infergate/e2e/loadgen"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
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
	// Every workload with ours; the baselines, the oracle and 4 proxies
	// on one workload (their own tests cover them).
	var strategies []bench.Strategy
	for _, s := range bench.Strategies() {
		switch s.Name {
		case "ours":
		case "round-robin", "ours ×4 proxies", "oracle", "approx-prefix":
			s.Only = []string{"multi-turn"}
		default:
			continue
		}
		strategies = append(strategies, s)
	}
	// A strategy that only edits the config: the pool's own picker with a
	// queue-only profile (the hook an external picker uses).
	strategies = append(strategies, bench.Strategy{Name: "profile", Kind: bench.Baseline, Proxies: 1, Only: []string{"multi-turn"},
		Configure: func(_ *bench.Env, rs []snapshotv1.Named) ([]snapshotv1.Named, error) {
			for _, r := range rs {
				if b, ok := r.(*snapshotv1.Backend); ok {
					b.Picker = &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "queue", Weight: 1}}}
					return rs, nil
				}
			}
			return nil, errors.New("no backend")
		}})
	scs := bench.Scenarios(bench.Smoke)
	for i := range scs {
		// Half a second of simulated arrivals is enough to exercise the
		// path (sessions' later turns have no arrival time and stay).
		w := &scs[i].Workload
		k := 0
		w.Requests = slices.DeleteFunc(w.Requests, func(r loadgen.Request) bool {
			k++
			return k > 3 && r.At >= time.Second/2
		})
	}
	rep, err := bench.Run(ctx, bench.Options{TimeScale: 0.1, Scenarios: scs, Strategies: strategies,
		ScrapeProxies: []int{1, 4}, ScrapeWindow: 300 * time.Millisecond, Repeats: 2})
	if err != nil {
		t.Fatal(err)
	}
	grid := 0
	for _, c := range rep.Cells {
		if c.Run == 1 {
			grid++
		}
	}
	if want := len(scs) + 5; grid != want {
		t.Fatalf("%d cells in the grid, want %d", grid, want)
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
	for w, names := range rep.Repeated {
		for _, st := range names {
			n := 0
			for _, c := range rep.Cells {
				if c.Workload == w && c.Strategy == st {
					n++
				}
			}
			if n != 2 {
				t.Errorf("%s / %s repeated: %d runs, want 2", w, st, n)
			}
		}
	}
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	svg, _ := os.ReadFile(filepath.Join(dir, "ttft.svg"))
	if !strings.Contains(string(md), "## Summary") || !strings.Contains(string(md), "## multi-turn") ||
		!strings.Contains(string(md), "## Why targets are missed") || !strings.Contains(string(svg), "<svg") {
		t.Fatalf("report incomplete:\n%s", md)
	}
	if len(rep.Ratios()) == 0 {
		t.Fatal("no ratios")
	}
}
