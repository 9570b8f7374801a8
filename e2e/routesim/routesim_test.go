package routesim_test

import (
	"testing"

	"github.com/infergate/infergate/e2e/routesim"
)

func scenario(t *testing.T, name string) routesim.Scenario {
	t.Helper()
	for _, sc := range routesim.Scenarios(0) {
		if sc.Workload.Name == name {
			return sc
		}
	}
	t.Fatalf("no workload %q", name)
	return routesim.Scenario{}
}

// Every job ends, each with a status, and a replay is repeatable: the
// same seed gives the same outcomes.
func TestRunCompletesAndRepeats(t *testing.T) {
	sc := scenario(t, "multi-turn")
	sc.Workload.Jobs = sc.Workload.Jobs[:200]
	for i := range sc.Workload.Jobs {
		if sc.Workload.Jobs[i].After >= 200 {
			sc.Workload.Jobs[i].After = -1
		}
	}
	a, err := routesim.Run(sc.Config, sc.Workload, routesim.Ours())
	if err != nil {
		t.Fatal(err)
	}
	b, err := routesim.Run(sc.Config, sc.Workload, routesim.Ours())
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if a[i].Status != 200 {
			t.Fatalf("job %d: status %d", i, a[i].Status)
		}
		if a[i] != b[i] {
			t.Fatalf("job %d differs between two replays: %+v / %+v", i, a[i], b[i])
		}
	}
}

// The replay sees what the wall-clock benchmark sees: on the shared-prefix
// workload the default picker caches far more than round robin, and its
// time to first token is far lower; the oracle sees the truth.
func TestRunSeparatesStrategies(t *testing.T) {
	sc := scenario(t, "shared-prefix")
	summary := func(st routesim.Strategy) routesim.Summary {
		out, err := routesim.Run(sc.Config, sc.Workload, st)
		if err != nil {
			t.Fatal(err)
		}
		return routesim.Summarize(sc.Workload, out, len(sc.Config.Replicas))
	}
	rr, ours, oracle := summary(routesim.Baselines()[0]), summary(routesim.Ours()), summary(routesim.Oracle())
	if !(ours.CacheHit > 2*rr.CacheHit && ours.TTFT.P90*5 < rr.TTFT.P90) {
		t.Fatalf("ours hit %.2f TTFT p90 %.2f s, round robin %.2f / %.2f s", ours.CacheHit, ours.TTFT.P90, rr.CacheHit, rr.TTFT.P90)
	}
	if oracle.CacheHit < rr.CacheHit {
		t.Fatalf("oracle hit %.2f below round robin's %.2f", oracle.CacheHit, rr.CacheHit)
	}
}
