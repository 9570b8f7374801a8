package bench

import (
	"fmt"
	"math"
	"slices"

	"github.com/infergate/infergate/e2e/loadgen"
)

// metric is one column of the summary matrix.
type metric struct {
	Name string
	get  func(*Cell) float64
	// higher is better (throughput); lower is better otherwise.
	higher bool
	// target bounds ours / best baseline (≤ for latency, ≥ for
	// throughput); noise is the factor a single run may move the ratio
	// by, which decides what is in doubt after the grid.
	target, noise float64
}

// matrixMetrics are the summary matrix's columns with the targets.
var matrixMetrics = []metric{
	{Name: "TTFT p90", get: func(c *Cell) float64 { return c.Summary.TTFT.P90 }, target: 1.05, noise: 1.35},
	{Name: "TTFT p99", get: func(c *Cell) float64 { return c.Summary.TTFT.P99 }, target: 1.05, noise: 1.35},
	{Name: "E2E p90", get: func(c *Cell) float64 { return c.Summary.E2E.P90 }, target: 1.05, noise: 1.25},
	{Name: "throughput", get: (*Cell).TokensPerSec, higher: true, target: 0.95, noise: 1.08},
}

var ttftP90 = matrixMetrics[0]

// Targets that are not "ours vs the best baseline".
const (
	fourVsOneTarget   = 1.1  // ours ×4 / ours, TTFT p90
	oracleTarget      = 1.3  // ours / oracle, TTFT p90, where prefixes repeat
	sharedTTFTTarget  = 20.0 // round robin / ours, TTFT p90, shared-prefix
	saturatedTarget   = 1.8  // ours / round robin, throughput, shared-prefix-saturated
	criticalTarget    = 0.99 // overload, critical success
	loraLoadedTarget  = 0.9  // adapter resident at admission
	loraBalanceTarget = 1.5  // max/mean load on the LoRA workload
	scrapeTarget      = 2.0  // scrapes per server, most proxies / 1
)

// runs are the cells of a workload × strategy, in run order.
func (r *Report) runs(workload, strategy string) []Cell {
	var out []Cell
	for _, c := range r.Cells {
		if c.Workload == workload && c.Strategy == strategy {
			out = append(out, c)
		}
	}
	return out
}

// cell is the grid's (first) run of a workload × strategy, or nil.
func (r *Report) cell(workload, strategy string) *Cell {
	for i := range r.Cells {
		if c := &r.Cells[i]; c.Workload == workload && c.Strategy == strategy {
			return c
		}
	}
	return nil
}

// value is the median of f over a workload × strategy's runs (NaN when it
// did not run).
func (r *Report) value(workload, strategy string, f func(*Cell) float64) float64 {
	return median(r.runs(workload, strategy), f)
}

// median is the median of f over cells (NaN for none).
func median(cs []Cell, f func(*Cell) float64) float64 {
	v := make([]float64, len(cs))
	for i := range cs {
		v[i] = f(&cs[i])
	}
	slices.Sort(v)
	switch {
	case len(v) == 0:
		return math.NaN()
	case len(v)%2 == 0:
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return v[len(v)/2]
}

// strategiesOf are the strategies of a kind that ran on a workload.
func (r *Report) strategiesOf(workload string, kinds ...Kind) []string {
	var out []string
	for _, st := range r.Strategies {
		if slices.Contains(kinds, st.Kind) && r.cell(workload, st.Name) != nil {
			out = append(out, st.Name)
		}
	}
	return out
}

// bestBaseline is the baseline with the best median of m on a workload,
// and that median ("" and NaN without baselines).
func (r *Report) bestBaseline(workload string, m metric) (string, float64) {
	best, bv := "", math.NaN()
	for _, name := range r.strategiesOf(workload, Baseline) {
		v := r.value(workload, name, m.get)
		if math.IsNaN(v) {
			continue
		}
		if best == "" || m.higher && v > bv || !m.higher && v < bv {
			best, bv = name, v
		}
	}
	return best, bv
}

// Comparison is one checked target: A / B against Target.
type Comparison struct {
	Workload string
	// What is compared, for the report ("ours vs best baseline, TTFT p90").
	What   string
	A, B   string // strategies (B may be the best baseline's name)
	Metric string
	// metric reads the compared value from a run.
	metric metric
	VA, VB float64
	Ratio  float64
	Target float64
	// AtLeast: the ratio must be ≥ Target (else ≤).
	AtLeast bool
	// noise is how far a single run may move the ratio.
	noise float64
	// Runs of A and B the medians are over.
	RunsA, RunsB int
}

// Met reports whether the comparison holds.
func (c *Comparison) Met() bool {
	if math.IsNaN(c.Ratio) {
		return false
	}
	if c.AtLeast {
		return c.Ratio >= c.Target
	}
	return c.Ratio <= c.Target
}

// InDoubt reports whether single runs could flip the verdict: the ratio
// is within the noise factor of the target, or the target is missed. A
// miss is what the report has to explain, so it stands on medians too:
// cells whose p90 sits between a cached prompt and a cold prefill move
// far more than the noise factor from run to run (shared prefixes on 4
// proxies: TTFT p90 0.37–1.16 s over 7 runs of the same code; skewed
// popularity, 4 proxies against 1: 1.66× in one run, 1.11× and 1.24× as
// medians of 3), and a clear miss left at one run was as often noise.
func (c *Comparison) InDoubt() bool {
	return !c.Met() || c.Ratio >= c.Target/c.noise && c.Ratio <= c.Target*c.noise
}

func (c *Comparison) String() string {
	op := "≤"
	if c.AtLeast {
		op = "≥"
	}
	verdict := "met"
	if !c.Met() {
		verdict = "MISSED"
	}
	return fmt.Sprintf("%s: %s %s %s/%s = %.2f× (%s, target %s %.3g×, %s; median of %d / %d runs)",
		c.Workload, c.What, c.Metric, c.A, c.B, c.Ratio, values(c), op, c.Target, verdict, c.RunsA, c.RunsB)
}

func values(c *Comparison) string {
	if c.Metric == "throughput" {
		return fmt.Sprintf("%.0f / %.0f tokens/s", c.VA, c.VB)
	}
	return fmt.Sprintf("%s / %s", secs(c.VA), secs(c.VB))
}

// compare builds the comparison of a / b on a workload.
func (r *Report) compare(workload, what, a, b string, m metric, target float64, atLeast bool, noise float64) *Comparison {
	if r.cell(workload, a) == nil || r.cell(workload, b) == nil {
		return nil
	}
	va, vb := r.value(workload, a, m.get), r.value(workload, b, m.get)
	return &Comparison{Workload: workload, What: what, A: a, B: b, Metric: m.Name, metric: m, VA: va, VB: vb, Ratio: ratio(va, vb),
		Target: target, AtLeast: atLeast, noise: noise, RunsA: len(r.runs(workload, a)), RunsB: len(r.runs(workload, b))}
}

// Matrix is ours vs the best baseline on one workload, one comparison per
// matrix metric (nil where something did not run), plus the contenders
// of the comparisons in doubt: the best baseline and the runner-up when
// it is within a run's noise of the best (a repeat may swap them; the
// others would need two runs to move the same way, and repeating every
// close baseline would double the benchmark's wall time).
func (r *Report) Matrix(workload string) (cmp []*Comparison, contenders []string) {
	for _, m := range matrixMetrics {
		best, bv := r.bestBaseline(workload, m)
		if best == "" {
			cmp = append(cmp, nil)
			continue
		}
		c := r.compare(workload, "ours vs best baseline,", oursName, best, m, m.target, m.higher, m.noise)
		cmp = append(cmp, c)
		if c == nil || !c.InDoubt() {
			continue
		}
		if !slices.Contains(contenders, best) {
			contenders = append(contenders, best)
		}
		second, sv := "", math.NaN()
		for _, name := range r.strategiesOf(workload, Baseline) {
			v := r.value(workload, name, m.get)
			if name == best || math.IsNaN(v) {
				continue
			}
			if second == "" || m.higher && v > sv || !m.higher && v < sv {
				second, sv = name, v
			}
		}
		if second != "" && ratio(sv, bv) <= m.noise && ratio(bv, sv) <= m.noise && !slices.Contains(contenders, second) {
			contenders = append(contenders, second)
		}
	}
	return cmp, contenders
}

// Comparisons are every checked comparison of a workload other than the
// matrix: 4 proxies vs 1, ours vs oracle, and the workload's own targets.
func (r *Report) Comparisons(sc *Scenario) []*Comparison {
	w := sc.Workload.Name
	var out []*Comparison
	add := func(c *Comparison) {
		if c != nil {
			out = append(out, c)
		}
	}
	add(r.compare(w, "4 proxies vs 1,", oursFourName, oursName, ttftP90, fourVsOneTarget, false, 1.35))
	if sc.SharedPrefixes {
		for _, o := range r.strategiesOf(w, Oracle) {
			add(r.compare(w, "ours vs oracle,", oursName, o, ttftP90, oracleTarget, false, 1.35))
		}
	}
	switch w {
	case "shared-prefix":
		add(r.compare(w, "round robin vs ours,", roundRobinName, oursName, ttftP90, sharedTTFTTarget, true, 1.5))
	case "shared-prefix-saturated":
		add(r.compare(w, "ours vs round robin,", oursName, roundRobinName, matrixMetrics[3], saturatedTarget, true, 1.1))
	}
	return out
}

// inDoubt lists, per workload, the strategies whose repeats could change
// a verdict after the grid.
func (r *Report) inDoubt() map[string][]string {
	out := map[string][]string{}
	for i := range r.Scenarios {
		sc := &r.Scenarios[i]
		w := sc.Workload.Name
		var names []string
		addName := func(n string) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		cmp, contenders := r.Matrix(w)
		for _, c := range cmp {
			if c != nil && c.InDoubt() {
				addName(oursName)
			}
		}
		if len(contenders) > 0 {
			addName(oursName)
			for _, n := range contenders {
				addName(n)
			}
		}
		for _, c := range r.Comparisons(sc) {
			if c.InDoubt() {
				addName(c.A)
				addName(c.B)
			}
		}
		if len(names) > 0 {
			out[w] = names
		}
	}
	return out
}

// classRate is the share of a class's requests f counts (NaN without
// requests of the class).
func classRate(s loadgen.Summary, class string, f func(*loadgen.ClassCounts) int) float64 {
	c := s.ByClass[class]
	if c == nil || c.Total == 0 {
		return math.NaN()
	}
	return float64(f(c)) / float64(c.Total)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return a / b
}
