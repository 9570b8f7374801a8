package routesim_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
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
// same seed gives the same outcomes, for ours and for the baselines that
// break ties at random (the simulation seeds their tie breakers).
func TestRunCompletesAndRepeats(t *testing.T) {
	sc := scenario(t, "multi-turn")
	sc.Workload.Jobs = sc.Workload.Jobs[:200]
	for i := range sc.Workload.Jobs {
		if sc.Workload.Jobs[i].After >= 200 {
			sc.Workload.Jobs[i].After = -1
		}
	}
	for _, st := range append(routesim.Baselines(), routesim.Ours()) {
		a := replaySame(t, sc, st, st)
		for i := range a {
			if a[i].Status != 200 {
				t.Fatalf("%s, job %d: status %d", st.Name, i, a[i].Status)
			}
		}
	}
}

// replaySame runs sc with strategies a and b and fails unless every job's
// outcome is the same; it returns a's outcomes.
func replaySame(t *testing.T, sc routesim.Scenario, a, b routesim.Strategy) []routesim.Outcome {
	t.Helper()
	outA, err := routesim.Run(sc.Config, sc.Workload, a)
	if err != nil {
		t.Fatal(err)
	}
	outB, err := routesim.Run(sc.Config, sc.Workload, b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range outA {
		if outA[i] != outB[i] {
			t.Fatalf("job %d: %s %+v, %s %+v", i, a.Name, outA[i], b.Name, outB[i])
		}
	}
	return outA
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

// wrapped is a strategy's picker that wraps another (as a tool classifying
// picks would): it forwards the clock and outcomes, and so must replay
// exactly as the picker it wraps.
type wrapped struct{ picker.Picker }

func (w wrapped) SetClock(now func() time.Time) { w.Picker.(routesim.Clocked).SetClock(now) }

func (w wrapped) SetRand(r *rand.Rand) { w.Picker.(routesim.Seeded).SetRand(r) }

func (w wrapped) Observe(req *picker.Request, ep *endpoints.Endpoint, o picker.Outcome) {
	w.Picker.(picker.Observer).Observe(req, ep, o)
}

// A picker reached through a wrapper keeps the simulation's clock: on the
// wall clock its backlogs would never drain in virtual time, and the
// replay would differ from the unwrapped picker's without any error.
func TestWrappedPickerKeepsClock(t *testing.T) {
	sc := scenario(t, "shared-prefix")
	sc.Workload.Jobs = sc.Workload.Jobs[:150]
	ours := routesim.Ours()
	wrap := routesim.Strategy{Name: "wrapped", New: func(env *routesim.Env, p int) picker.Picker {
		return wrapped{ours.New(env, p)}
	}}
	replaySame(t, sc, ours, wrap)
}

// A closed loop's users send their first requests Stagger apart (all at
// once without it), each next request as its previous one ends.
func TestStaggerSpacesClosedLoopStart(t *testing.T) {
	sc := scenario(t, "shared-prefix-saturated")
	sc.Workload.Jobs = sc.Workload.Jobs[:60]
	users := sc.Workload.Concurrency
	for _, stagger := range []time.Duration{0, time.Millisecond} {
		cfg := sc.Config
		cfg.Stagger = stagger
		out, err := routesim.Run(cfg, sc.Workload, routesim.Baselines()[0])
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range out {
			if i < users && o.Sent != time.Duration(i)*stagger {
				t.Fatalf("stagger %v: user %d's first request sent at %v, want %v", stagger, i, o.Sent, time.Duration(i)*stagger)
			}
		}
	}
}
