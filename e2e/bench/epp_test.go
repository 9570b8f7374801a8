package bench_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/bench"
	"github.com/infergate/infergate/e2e/loadgen"
)

// TestEPPStrategy runs the real reference picker (epp, built from the
// module proxy) on one small workload through the proxy's ext_proc path:
// every request is answered, by the servers the picker chose. It runs at
// the benchmark's own time scale: faster, the picker's metrics refresh
// (scaled with it) falls behind on a loaded machine and it stops picking.
func TestEPPStrategy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver, the reference picker, a fleet and a proxy")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var st []bench.Strategy
	for _, s := range bench.Strategies() {
		if s.Name == "epp" {
			st = append(st, s)
		}
	}
	if len(st) != 1 {
		t.Fatal("no epp strategy registered")
	}
	var scs []bench.Scenario
	for _, sc := range bench.Scenarios(bench.Smoke) {
		if sc.Workload.Name == "shared-prefix" {
			scs = append(scs, sc)
		}
	}
	var failures []string
	results := func(_ *bench.Cell, _ loadgen.Workload, rs []loadgen.Result) {
		for _, r := range rs {
			if !r.OK() && len(failures) < 5 {
				failures = append(failures, fmt.Sprintf("request %d: status %d %s", r.Index, r.Status, r.Err))
			}
		}
	}
	rep, err := bench.Run(ctx, bench.Options{TimeScale: 0.25, Scenarios: scs, Strategies: st, Repeats: 1, Results: results})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cells) != 1 {
		t.Fatalf("%d cells, want 1", len(rep.Cells))
	}
	s := rep.Cells[0].Summary
	if s.Requests == 0 || s.OK != s.Requests {
		t.Fatalf("%d of %d requests ok; first failures: %s", s.OK, s.Requests, strings.Join(failures, "; "))
	}
	if s.TTFT.P50 <= 0 {
		t.Fatalf("no latency measured: %+v", s)
	}
}
