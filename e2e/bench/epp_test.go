package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/bench"
)

// TestEPPStrategy runs the real reference picker (epp, built from the
// module proxy) on one small workload through the proxy's ext_proc path:
// every request is answered, by the servers the picker chose.
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
	rep, err := bench.Run(ctx, bench.Options{TimeScale: 0.1, Scenarios: scs, Strategies: st, Repeats: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cells) != 1 {
		t.Fatalf("%d cells, want 1", len(rep.Cells))
	}
	s := rep.Cells[0].Summary
	if s.Requests == 0 || s.OK != s.Requests {
		t.Fatalf("%d of %d requests ok: %+v", s.OK, s.Requests, s.ByClass)
	}
	if s.TTFT.P50 <= 0 {
		t.Fatalf("no latency measured: %+v", s)
	}
}
