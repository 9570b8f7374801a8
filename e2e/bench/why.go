package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// writeWhy explains every missed target in numbers from this run.
func (r *Report) writeWhy(b *strings.Builder) {
	b.WriteString("## Why targets are missed\n\n")
	n := 0
	for i := range r.Scenarios {
		sc := &r.Scenarios[i]
		cmps, _ := r.Matrix(sc.Workload.Name)
		cmps = append(cmps, r.Comparisons(sc)...)
		for _, c := range cmps {
			if c == nil || c.Met() {
				continue
			}
			n++
			fmt.Fprintf(b, "- **%s, %s %s/%s on %s = %.2f×** (target %s %.3g×): %s\n", c.Workload, strings.TrimSuffix(c.What, ","),
				c.A, c.B, c.Metric, c.Ratio, map[bool]string{true: "≥", false: "≤"}[c.AtLeast], c.Target, r.diagnose(c))
		}
	}
	for _, t := range r.otherTargets() {
		if t.key != "" && !t.met {
			n++
			fmt.Fprintf(b, "- **%s**: %s\n", t.line, otherWhy[t.key])
		}
	}
	if n == 0 {
		b.WriteString("Every target checked in this run is met.\n")
	}
	b.WriteString("\n")
}

// representative is the run of a workload × strategy whose value of the
// compared metric is the median (the one the verdict rests on).
func (r *Report) representative(workload, strategy string, m metric) *Cell {
	runs := r.runs(workload, strategy)
	if len(runs) == 0 {
		return nil
	}
	get := m.get
	slices.SortFunc(runs, func(a, b Cell) int { return cmp.Compare(get(&a), get(&b)) })
	return &runs[(len(runs)-1)/2]
}

// runValues lists the compared metric of every run of both sides, in run
// order, when either side ran more than once: a median between runs far
// apart (a p90 that lands among cached prompts in one run and among cold
// prefills in the next) is a different verdict from one of close runs.
func (r *Report) runValues(c *Comparison) string {
	ra, rb := r.runs(c.Workload, c.A), r.runs(c.Workload, c.B)
	if len(ra) < 2 && len(rb) < 2 {
		return ""
	}
	m := c.metric
	list := func(runs []Cell) string {
		vs := make([]string, len(runs))
		for i := range runs {
			v := m.get(&runs[i])
			if m.higher {
				vs[i] = fmt.Sprintf("%.0f", v)
			} else {
				vs[i] = secs(v)
			}
		}
		return strings.Join(vs, ", ")
	}
	return fmt.Sprintf("%s per run: %s %s; %s %s", c.Metric, c.A, list(ra), c.B, list(rb))
}

// diagnose puts numbers on a missed comparison: what differs between the
// two sides' representative runs — cache hits, load spread, and where the
// requests beyond the other side's percentile went.
func (r *Report) diagnose(c *Comparison) string {
	a, b := r.representative(c.Workload, c.A, c.metric), r.representative(c.Workload, c.B, c.metric)
	if a == nil || b == nil {
		return "one side did not run."
	}
	var parts []string
	parts = append(parts, fmt.Sprintf("cache hit %.1f %% vs %.1f %%, max/mean requests per replica %.2f vs %.2f, TTFT p50 %s vs %s, E2E p50 %s vs %s",
		100*a.Summary.CacheHit, 100*b.Summary.CacheHit, a.Imbalance, b.Imbalance, secs(a.Summary.TTFT.P50), secs(b.Summary.TTFT.P50),
		secs(a.Summary.E2E.P50), secs(b.Summary.E2E.P50)))
	if v := r.runValues(c); v != "" {
		parts = append(parts, v)
	}
	if c.Metric == "throughput" {
		parts = append(parts, fmt.Sprintf("%d vs %d requests completed, mean output %.0f vs %.0f tokens",
			a.Summary.OK, b.Summary.OK, meanOutput(a), meanOutput(b)))
		if !a.Closed {
			// Open loop: the same tokens over the span to the last
			// completion, so a longer drain is all a miss can be.
			parts = append(parts, fmt.Sprintf("the last request completed %s vs %s after the first send",
				secs(lastEnd(a)), secs(lastEnd(b))))
		}
		return strings.Join(parts, "; ") + "."
	}
	// The side that is too slow, and the value its requests should stay
	// under: the other side's (A / B ≤ T), or A's divided by the target
	// (A / B ≥ T: B must be T times faster).
	slow, threshold, what := a, c.VB, fmt.Sprintf("%s's %s", b.Strategy, c.Metric)
	if c.AtLeast {
		slow, threshold, what = b, c.VA/c.Target, fmt.Sprintf("%s's %s / %.2g", a.Strategy, c.Metric, c.Target)
	}
	over := slowRequests(slow, threshold, strings.HasPrefix(c.Metric, "TTFT"))
	if len(over) > 0 {
		coldOver, replica, onTop, served := explainSlow(slow, over)
		parts = append(parts, fmt.Sprintf("%d of the %d requests of %s (%.1f %%) took longer than %s (%s); %.0f %% of them had less than half their prompt cached "+
			"(of all its requests: %.0f %%), and %s served %.0f %% of them while serving %.0f %% of all requests",
			len(over), len(slow.Requests), slow.Strategy, 100*float64(len(over))/float64(max(len(slow.Requests), 1)), secs(threshold), what,
			100*coldOver, 100*coldShare(slow.Requests), replica, 100*onTop, 100*served))
	}
	return strings.Join(parts, "; ") + "."
}

// lastEnd is when the cell's last successful request completed, from its
// first send.
func lastEnd(c *Cell) float64 {
	first, last := math.Inf(1), 0.0
	for _, o := range c.Requests {
		first, last = min(first, o.Start), max(last, o.Start+o.E2E)
	}
	return last - first
}

func meanOutput(c *Cell) float64 {
	if len(c.Requests) == 0 {
		return math.NaN()
	}
	t := 0
	for _, o := range c.Requests {
		t += o.Output
	}
	return float64(t) / float64(len(c.Requests))
}

// slowRequests are a cell's requests whose TTFT (or E2E) exceeds limit.
func slowRequests(c *Cell, limit float64, ttft bool) []Outcome {
	var out []Outcome
	for _, o := range c.Requests {
		v := o.E2E
		if ttft {
			v = o.TTFT
		}
		if v > limit {
			out = append(out, o)
		}
	}
	return out
}

// cold reports a request that found less than half its prompt cached.
func cold(o Outcome) bool { return 2*o.Cached < o.Prompt }

func coldShare(os []Outcome) float64 {
	n := 0
	for _, o := range os {
		if cold(o) {
			n++
		}
	}
	return float64(n) / float64(max(len(os), 1))
}

// explainSlow returns the share of slow requests that were cold, the
// replica that served most of them, its share of them and its share of
// all the cell's requests.
func explainSlow(c *Cell, slow []Outcome) (coldShareOfSlow float64, replica string, ofSlow, ofAll float64) {
	per := map[string]int{}
	for _, o := range slow {
		per[o.Replica]++
	}
	for name, n := range per {
		if replica == "" || n > per[replica] || n == per[replica] && name < replica {
			replica = name
		}
	}
	all := 0
	for _, o := range c.Requests {
		if o.Replica == replica {
			all++
		}
	}
	return coldShare(slow), replica, float64(per[replica]) / float64(len(slow)), float64(all) / float64(max(len(c.Requests), 1))
}

// otherWhy explains the targets that are not ratios: what limits them.
var otherWhy = map[string]string{
	"overload": "critical requests are never shed; failures here are timeouts of requests queued in overloaded replicas (see the overload table's failed counts).",
	"lora": "ground truth from the simulator (adapter resident at admission): 16 adapters × their homes cost unavoidable first loads, and each " +
		"adapter's first request is placed by load (no server reports the adapter yet); the LoRA table has this run's numbers.",
	"lora-balance": "adapter home sets concentrate an adapter's requests; an uneven draw of adapters over a short run loads some homes more.",
	"scrape":       "each proxy scrapes every 50 ms × the proxy count it is told; a miss means scrapers did not take up the longer interval within the window.",
}
