package bench

import (
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/infergate/infergate/e2e/loadgen"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// synthetic returns a cell with the given TTFT p90 (p99 = 2×, E2E p90 =
// 3×) and throughput.
func synthetic(workload, strategy string, kind Kind, run int, p90, tput float64) Cell {
	s := loadgen.Summary{OK: 10, Requests: 10, TokensPerSec: tput, CacheHit: 0.5}
	s.TTFT = loadgen.Percentiles{P50: p90 / 2, P90: p90, P99: 2 * p90}
	s.E2E = loadgen.Percentiles{P50: p90, P90: 3 * p90, P99: 4 * p90}
	var reqs []Outcome
	for i := range 10 {
		// One slow, cold request on replica-1 per cell.
		o := Outcome{TTFT: p90 / 2, E2E: p90, Prompt: 100, Cached: 90, Output: 10, Replica: "replica-0"}
		if i == 9 {
			o = Outcome{TTFT: 2 * p90, E2E: 3 * p90, Prompt: 100, Cached: 0, Output: 10, Replica: "replica-1"}
		}
		reqs = append(reqs, o)
	}
	return Cell{Workload: workload, Strategy: strategy, Kind: kind, Run: run, Summary: s, Imbalance: 1.2, Requests: reqs}
}

func syntheticReport() *Report {
	r := &Report{Repeats: 3, Repeated: map[string][]string{}}
	for _, st := range Strategies() {
		if st.Name != "ours + queue" {
			r.Strategies = append(r.Strategies, st)
		}
	}
	r.Scenarios = []Scenario{
		{Workload: loadgen.Workload{Name: "w"}, SharedPrefixes: true},
		{Workload: loadgen.Workload{Name: "v"}},
	}
	add := func(w, s string, run int, p90, tput float64) {
		kind := Baseline
		for _, st := range r.Strategies {
			if st.Name == s {
				kind = st.Kind
			}
		}
		r.Cells = append(r.Cells, synthetic(w, s, kind, run, p90, tput))
	}
	// w: approx-prefix is the best baseline on latency, round robin on
	// throughput; ours beats both on latency by far, loses 10 % on
	// throughput (in doubt); 4 proxies are 1.2× (in doubt); the oracle 1.25× (in
	// doubt, met).
	add("w", "round-robin", 1, 4, 1000)
	add("w", "random", 1, 6, 900)
	add("w", "least-in-flight", 1, 3, 950)
	add("w", "queue+kv", 1, 3.5, 990)
	add("w", "approx-prefix", 1, 2, 980)
	add("w", "ours", 1, 0.5, 900)
	add("w", oursFourName, 1, 0.6, 900)
	add("w", "oracle", 1, 0.4, 1000)
	// v: ours is 1.0× the best baseline (least-in-flight) on latency, runs
	// repeated: medians decide.
	for run, p := range []float64{1.0, 1.5, 0.9} {
		add("v", "least-in-flight", run+1, p, 1000)
	}
	add("v", "round-robin", 1, 1.3, 1000)
	for run, p := range []float64{1.2, 0.95, 3} {
		add("v", "ours", run+1, p, 1000)
	}
	return r
}

func TestMatrix(t *testing.T) {
	r := syntheticReport()
	cmp, contenders := r.Matrix("w")
	if len(cmp) != len(matrixMetrics) {
		t.Fatalf("%d comparisons", len(cmp))
	}
	if c := cmp[0]; c.B != "approx-prefix" || c.Ratio != 0.25 || !c.Met() || c.InDoubt() {
		t.Fatalf("TTFT p90: %+v", c)
	}
	if c := cmp[3]; c.B != "round-robin" || c.Ratio != 0.9 || c.Met() || !c.InDoubt() {
		t.Fatalf("throughput: %+v", c)
	}
	// Contenders: the best on throughput and the runner-up within 8 %.
	slices.Sort(contenders)
	if !slices.Equal(contenders, []string{"queue+kv", "round-robin"}) {
		t.Fatalf("contenders %v", contenders)
	}
	// Medians: v's ours median 1.2, least-in-flight's 1.0.
	cmp, _ = r.Matrix("v")
	if c := cmp[0]; c.B != "least-in-flight" || math.Abs(c.Ratio-1.2) > 1e-9 || c.RunsA != 3 || c.RunsB != 3 || c.Met() {
		t.Fatalf("v TTFT p90: %+v", c)
	}
}

func TestComparisonsAndDoubt(t *testing.T) {
	r := syntheticReport()
	var got []string
	for _, c := range r.Comparisons(&r.Scenarios[0]) {
		got = append(got, c.What+c.A+"/"+c.B)
	}
	if !slices.Equal(got, []string{"4 proxies vs 1," + oursFourName + "/ours", "ours vs oracle,ours/oracle"}) {
		t.Fatalf("comparisons %q", got)
	}
	if cs := r.Comparisons(&r.Scenarios[1]); len(cs) != 0 {
		t.Fatalf("v: %d comparisons without ×4 or oracle runs", len(cs))
	}
	doubt := r.inDoubt()
	for _, want := range []string{"ours", oursFourName, "oracle", "round-robin"} {
		if !slices.Contains(doubt["w"], want) {
			t.Errorf("w in doubt: %v, missing %s", doubt["w"], want)
		}
	}
	if slices.Contains(doubt["w"], "random") {
		t.Errorf("random (far from the best everywhere) in doubt: %v", doubt["w"])
	}
}

// TestMarkdown: the matrix marks verdicts, tables use medians, and every
// miss gets numbers.
func TestMarkdown(t *testing.T) {
	r := syntheticReport()
	md := r.Markdown()
	for _, want := range []string{
		"| w | 0.25× ✅ (approx-prefix) |",
		"| 0.90× ❌ (round-robin) |",
		"| v | 1.20× ❌ (least-in-flight) |",
		"**w, ours vs best baseline ours/round-robin on throughput = 0.90×** (target ≥ 0.95×): cache hit 50.0 % vs 50.0 %",
		"of the 10 requests of ours (10.0 %) took longer than 1.00 s (least-in-flight's TTFT p90); 100 % of them had less than half their prompt cached",
		"| ours | 1 | 3 |",
		"TTFT p90 per run: ours 1.20 s, 0.95 s, 3.00 s; least-in-flight 1.00 s, 1.50 s, 0.90 s;",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
	if strings.Contains(md, "Loaded box") {
		t.Error("a run without load samples is labelled loaded")
	}
	r.Load = []float64{float64(runtime.NumCPU()) * 3}
	if !strings.Contains(r.Markdown(), "**Loaded box**") {
		t.Error("a loaded run is not labelled")
	}
	if svg := r.RatioSVG(); !strings.Contains(svg, "throughput 0.90×") || !strings.Contains(svg, "#c62828") {
		t.Error("ratio plot lacks the missed throughput bar")
	}
}

func TestRegistry(t *testing.T) {
	all := Strategies()
	ours := 0
	for i, s := range all {
		if s.Kind == Ours {
			ours++
		}
		for _, o := range all[:i] {
			if o.Name == s.Name {
				t.Fatalf("%q twice", s.Name)
			}
		}
	}
	if ours != 1 {
		t.Fatalf("%d Ours strategies", ours)
	}
	for name, s := range map[string]Strategy{
		"duplicate":   {Name: "ours", Kind: Variant, Proxies: 1, New: newOurs},
		"second ours": {Name: "ours 2", Kind: Ours, Proxies: 1, New: newOurs},
		"no picker":   {Name: "x", Proxies: 1},
		"fleet keys":  {Name: "y", Proxies: 2, FleetKeys: true, Configure: func(_ *Env, rs []snapshotv1.Named) ([]snapshotv1.Named, error) { return rs, nil }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: registered", name)
				}
			}()
			r := &Registry{}
			registerOurs(r)
			r.Add(s)
		}()
	}
}

// A missed target is repeated however far off it is; a target met by more
// than the noise keeps its one run.
func TestMissIsInDoubt(t *testing.T) {
	for _, tc := range []struct {
		c    Comparison
		want bool
	}{
		{Comparison{Ratio: 3, Target: 1.1, noise: 1.35}, true},    // clear miss
		{Comparison{Ratio: 1.3, Target: 1.1, noise: 1.35}, true},  // miss within the noise
		{Comparison{Ratio: 1.0, Target: 1.1, noise: 1.35}, true},  // met within the noise
		{Comparison{Ratio: 0.5, Target: 1.1, noise: 1.35}, false}, // clearly met
		{Comparison{Ratio: 0.5, Target: 0.95, AtLeast: true, noise: 1.08}, true},
		{Comparison{Ratio: 2.35, Target: 1.8, AtLeast: true, noise: 1.1}, false},
	} {
		if got := tc.c.InDoubt(); got != tc.want {
			t.Errorf("ratio %v, target %v (at least %v): in doubt %v, want %v", tc.c.Ratio, tc.c.Target, tc.c.AtLeast, got, tc.want)
		}
	}
}

// TestRepeatsFollowDoubt: the strategies in doubt after the grid run until
// each has the repeats, alternating; a comparison that comes into doubt
// through those repeats (ours' median moves past the oracle's single run)
// has its other side repeated too; strategies never in doubt keep one run.
func TestRepeatsFollowDoubt(t *testing.T) {
	r := syntheticReport()
	// w's 4-proxy comparison is in doubt (1.2×); ours against the oracle
	// is clearly met after the grid (0.5 / 0.6), so the oracle is not.
	r.Cells = slices.DeleteFunc(r.Cells, func(c Cell) bool { return c.Workload == "w" && c.Strategy == "oracle" })
	r.Cells = append(r.Cells, synthetic("w", "oracle", Oracle, 1, 0.6, 1000))
	r.Repeated = map[string][]string{}
	if slices.Contains(r.inDoubt()["w"], "oracle") {
		t.Fatalf("oracle in doubt after the grid: %v", r.inDoubt()["w"])
	}
	var order []string
	run := func(sc *Scenario, st Strategy) error {
		p90 := 1.0
		switch st.Name {
		case "ours":
			p90 = 0.9 // ours' repeats read slower: its median is 0.9 s
		case oursFourName:
			p90 = 1.0
		case "oracle":
			p90 = 0.6
		}
		order = append(order, st.Name)
		r.Cells = append(r.Cells, synthetic(sc.Workload.Name, st.Name, st.Kind, len(r.runs(sc.Workload.Name, st.Name))+1, p90, 1000))
		return nil
	}
	w := r.Scenarios[:1]
	if err := r.repeatDoubts(3, w, r.Strategies, run); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ours", oursFourName, "oracle"} {
		if got := len(r.runs("w", n)); got != 3 {
			t.Errorf("%s: %d runs, want 3 (ran %v)", n, got, order)
		}
	}
	if !slices.Contains(r.Repeated["w"], "oracle") {
		t.Errorf("oracle not listed as repeated: %v", r.Repeated["w"])
	}
	if got := len(r.runs("w", "random")); got != 1 {
		t.Errorf("random (never in doubt) ran %d times", got)
	}
	// Alternating: ours and 4 proxies take turns before the oracle joins.
	if len(order) < 4 || order[0] == order[1] {
		t.Errorf("runs not alternating: %v", order)
	}
	// A strategy in doubt that is not among those to run ends the loop.
	if err := r.repeatDoubts(5, w, nil, run); err != nil {
		t.Fatal(err)
	}
}
