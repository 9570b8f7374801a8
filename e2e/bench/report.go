package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/infergate/infergate/e2e/loadgen"
)

func (r *Report) cell(workload, strategy string) *Cell {
	for i := range r.Cells {
		if c := &r.Cells[i]; c.Workload == workload && c.Strategy == strategy {
			return c
		}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return a / b
}

func classRate(s loadgen.Summary, class string, f func(*loadgen.ClassCounts) int) float64 {
	c := s.ByClass[class]
	if c == nil || c.Total == 0 {
		return math.NaN()
	}
	return float64(f(c)) / float64(c.Total)
}

// Ratios are the headline comparisons against the targets, one
// line each, for the end of the command's output and the report.
func (r *Report) Ratios() []string {
	out, _ := r.verdicts()
	return out
}

// verdicts returns the headline lines and the keys (of whyMissed) of the
// targets this run missed.
func (r *Report) verdicts() (out, missed []string) {
	check := func(key string, ok bool) string {
		if ok {
			return "met"
		}
		missed = append(missed, key)
		return "MISSED"
	}
	saturated := r.repeat("shared-prefix-saturated")
	if saturated != nil && len(saturated.Runs[0]) == 0 {
		saturated = nil
	}
	if rr, ours := r.cell("shared-prefix", "round-robin"), r.cell("shared-prefix", oursName); rr != nil && ours != nil {
		t := ratio(rr.Summary.TTFT.P90, ours.Summary.TTFT.P90)
		out = append(out, fmt.Sprintf("shared prefix: TTFT p90 round-robin/ours = %.1f× (target ≥ 20×, %s)", t, check("ttft", t >= 20)))
		tp := ratio(ours.Summary.TokensPerSec, rr.Summary.TokensPerSec)
		if saturated != nil {
			out = append(out, fmt.Sprintf("shared prefix ramp: throughput ours/round-robin = %.2f× (bounded by the offered load, see below)", tp))
		} else {
			out = append(out, fmt.Sprintf("shared prefix ramp: throughput ours/round-robin = %.2f× (target ≥ 1.8×, %s; bounded by the offered load)", tp, check("throughput", tp >= 1.8)))
		}
		if q := r.cell("shared-prefix", "queue+kv"); q != nil {
			out = append(out, fmt.Sprintf("shared prefix: TTFT p90 queue+kv/ours = %.1f×", ratio(q.Summary.TTFT.P90, ours.Summary.TTFT.P90)))
		}
	}
	if saturated != nil {
		tput := func(c *Cell) float64 { return c.TokensPerSec() }
		rr, ours := median(saturated.Runs[0], tput), median(saturated.Runs[1], tput)
		st := ratio(ours, rr)
		out = append(out, fmt.Sprintf("shared prefix at saturation (closed loop): throughput ours/round-robin = %.2f× (median of %d runs each: %.0f / %.0f tokens/s; target ≥ 1.8×, %s)",
			st, len(saturated.Runs[0]), ours, rr, check("throughput", st >= 1.8)))
	}
	if rp := r.repeat("shared-prefix"); rp != nil && len(rp.Runs[0]) > 0 {
		p90 := func(c *Cell) float64 { return c.Summary.TTFT.P90 }
		one, four := median(rp.Runs[0], p90), median(rp.Runs[1], p90)
		x := ratio(four, one)
		out = append(out, fmt.Sprintf("shared prefix: TTFT p90 4 proxies/1 proxy = %.2f× (median of %d runs each: %.2f s / %.2f s; target ≤ 1.2×, %s)",
			x, len(rp.Runs[0]), four, one, check("parity", x <= 1.2)))
	}
	if len(r.ScrapeRates) > 1 {
		one, last := r.ScrapeRates[0], r.ScrapeRates[len(r.ScrapeRates)-1]
		x := ratio(last.PerServer, one.PerServer)
		out = append(out, fmt.Sprintf("scrapes per server: %d proxies/%d proxy = %.2f× (target ≤ 2×, %s)", last.Proxies, one.Proxies, x, check("scrape", x <= 2)))
	}
	if ours := r.cell("overload", "ours"); ours != nil {
		crit := classRate(ours.Summary, "critical", func(c *loadgen.ClassCounts) int { return c.OK })
		shed := classRate(ours.Summary, "sheddable", func(c *loadgen.ClassCounts) int { return c.Shed429 })
		lost := 0
		for _, c := range ours.Summary.ByClass {
			lost += c.Failed
		}
		out = append(out, fmt.Sprintf("overload (ours): critical success %.1f%% (target ≥ 99%%, %s); sheddable answered 429: %.1f%%; failed without a status or with another error: %d",
			100*crit, check("overload", crit >= 0.99), 100*shed, lost))
	}
	if off, on := r.cell("overload", "ours"), r.cell("overload", "ours + queue"); off != nil && on != nil {
		out = append(out, "overload, wait queue off → on: "+classShift(off.Summary, on.Summary, "critical")+"; "+
			classShift(off.Summary, on.Summary, "standard")+"; "+classShift(off.Summary, on.Summary, "sheddable"))
	}
	if ours := r.cell("lora", "ours"); ours != nil {
		out = append(out, fmt.Sprintf("LoRA (ours): %.1f%% of requests on a replica with the adapter loaded (target ≥ 90%%, %s); max/mean load %.2f (target ≤ 1.5, %s)",
			100*ours.LoRALoaded, check("lora", ours.LoRALoaded >= 0.9), ours.Imbalance, check("lora-balance", ours.Imbalance <= 1.5)))
	}
	return out, missed
}

// repeat returns the repeated comparison on a workload, or nil.
func (r *Report) repeat(workload string) *Repeat {
	for i := range r.Repeated {
		if r.Repeated[i].Workload == workload {
			return &r.Repeated[i]
		}
	}
	return nil
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

// Write writes report.md and ttft.svg into dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ttft.svg"), []byte(r.SVG()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.Markdown()), 0o644)
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Routing benchmark\n\n")
	fmt.Fprintf(&b, "Run %s, %d simulated replicas (modelsim, vLLM defaults: 16 sequences, 2,048 KV blocks × 16 tokens), "+
		"time scale %.2f (latencies below are simulated seconds), GOMAXPROCS %d, wall %s. "+
		"Proxies are in-process `server.Manager`s (the proxy's request path); with several proxies, requests are spread over them round robin "+
		"and each proxy scrapes every 50 ms × proxies (the harness sets the count; real proxies get it from the control plane, `Manifest.proxy_count`), and the proxies share their prefix affinity keys as in production: each runs the proxy's fleet-keys client against the control plane's aggregator on a loopback gRPC server (reports every 250 ms, pushes at most every 250 ms). Generated by `make bench-routing` (`go run ./e2e/cmd/loadgen -out e2e/bench/results`).\n\n",
		r.Started.UTC().Format(time.RFC3339), r.Replicas, r.TimeScale, r.GoMaxProcs, r.Wall.Round(time.Second))
	headline, missed := r.verdicts()
	b.WriteString("## Headline\n\n")
	for _, l := range headline {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	b.WriteString("\n![TTFT p90 per workload and strategy](ttft.svg)\n\n")
	for _, sc := range r.Scenarios {
		w := sc.Workload
		fmt.Fprintf(&b, "## %s\n\n%s; %d requests.\n\n", w.Name, w.Description, len(w.Requests))
		b.WriteString("| strategy | proxies | ok / sent | TTFT p50 | TTFT p90 | TTFT p99 | ITL p50 | ITL p90 | E2E p50 | E2E p90 | E2E p99 | tokens/s | cache hit | max/mean load |")
		extra := ""
		switch w.Name {
		case "lora":
			extra = " adapter loaded |"
		case "overload":
			extra = " critical ok / 429 | standard ok / 429 | sheddable ok / 429 |"
		}
		b.WriteString(extra + "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		b.WriteString(strings.Repeat("---:|", strings.Count(extra, "|")) + "\n")
		for _, c := range r.Cells {
			if c.Workload != w.Name {
				continue
			}
			s := c.Summary
			fmt.Fprintf(&b, "| %s | %d | %d / %d | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %.1f %% | %.2f |",
				c.Strategy, c.Proxies, s.OK, s.Requests, secs(s.TTFT.P50), secs(s.TTFT.P90), secs(s.TTFT.P99),
				ms(s.ITL.P50), ms(s.ITL.P90), secs(s.E2E.P50), secs(s.E2E.P90), secs(s.E2E.P99),
				c.TokensPerSec(), 100*s.CacheHit, c.Imbalance)
			switch w.Name {
			case "lora":
				fmt.Fprintf(&b, " %.1f %% |", 100*c.LoRALoaded)
			case "overload":
				for _, cls := range []string{"critical", "standard", "sheddable"} {
					cc := s.ByClass[cls]
					if cc == nil {
						b.WriteString(" – |")
						continue
					}
					fmt.Fprintf(&b, " %.1f %% / %.1f %%, TTFT p90 %s", 100*float64(cc.OK)/float64(cc.Total), 100*float64(cc.Shed429)/float64(cc.Total), secs(cc.TTFT.P90))
					if cc.Failed > 0 {
						fmt.Fprintf(&b, " (%d failed)", cc.Failed)
					}
					b.WriteString(" |")
				}
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if rp := r.repeat("shared-prefix"); rp != nil && len(rp.Runs[0]) > 1 {
		b.WriteString("## 4 proxies vs 1 proxy\n\nThe shared-prefix workload again with ours on 1 and on 4 proxies, alternating (the first pair is the grid's); the headline compares medians.\n\n| run | TTFT p90, 1 proxy | TTFT p90, 4 proxies | TTFT p50, 1 / 4 | cache hit, 1 / 4 |\n|---:|---:|---:|---:|---:|\n")
		for i := range min(len(rp.Runs[0]), len(rp.Runs[1])) {
			a, c := rp.Runs[0][i].Summary, rp.Runs[1][i].Summary
			fmt.Fprintf(&b, "| %d | %s | %s | %s / %s | %.1f %% / %.1f %% |\n", i+1, secs(a.TTFT.P90), secs(c.TTFT.P90),
				secs(a.TTFT.P50), secs(c.TTFT.P50), 100*a.CacheHit, 100*c.CacheHit)
		}
		b.WriteString("\n")
	}
	if rp := r.repeat("shared-prefix-saturated"); rp != nil && len(rp.Runs[0]) > 1 {
		b.WriteString("## Throughput at saturation, repeated\n\nThe closed-loop shared-prefix workload again with round robin and ours, alternating (the first pair is the grid's); the headline compares medians.\n\n| run | tokens/s, round robin | tokens/s, ours | ratio | cache hit, round robin / ours |\n|---:|---:|---:|---:|---:|\n")
		for i := range min(len(rp.Runs[0]), len(rp.Runs[1])) {
			a, c := &rp.Runs[0][i], &rp.Runs[1][i]
			fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.2f× | %.1f %% / %.1f %% |\n", i+1, a.TokensPerSec(), c.TokensPerSec(),
				ratio(c.TokensPerSec(), a.TokensPerSec()), 100*a.Summary.CacheHit, 100*c.Summary.CacheHit)
		}
		b.WriteString("\n")
	}
	if len(r.ScrapeRates) > 0 {
		b.WriteString("## Scrape load per model server\n\nEach proxy scrapes every endpoint every 50 ms × (number of proxies), ±20 % jitter, so a server sees about 20 scrapes/s however many proxies run (measured on an idle fleet of the same replicas, wall clock). Here the harness gives each registry the count; real proxies get it from the control plane in every Manifest (`proxy_count` = max(xDS streams, Ready proxy pods)), which the e2e scenario `TestScrapeLoadIndependentOfProxyCount` measures with real processes.\n\n| proxies | scrapes/s per server |\n|---:|---:|\n")
		for _, s := range r.ScrapeRates {
			fmt.Fprintf(&b, "| %d | %.1f |\n", s.Proxies, s.PerServer)
		}
		b.WriteString("\n")
	}
	b.WriteString(howToRead)
	b.WriteString("## Why targets are missed\n\n")
	if len(missed) == 0 {
		b.WriteString("Every target checked in this run is met.\n")
	} else {
		for _, k := range slices.Compact(missed) {
			b.WriteString(whyMissed[k])
		}
	}
	return b.String()
}

const howToRead = `## How to read this

- **round-robin** is what a Kubernetes Service does; **random** and **least-in-flight** (this proxy's own open requests) need no metrics;
  **queue+kv** is the reference picker's scorers without prefix affinity (min-max queue ×2, 1 − KV ×2, shedding);
  **ours** is ` + "`picker.FromProfile(nil)`" + `: queue ×2 (min-max with a spread floor of 4 requests), KV ×2, prefix ×3
  (rendezvous affinity of the prompt's leading blocks with bounded load, repeated prefixes balanced over replicas, + the proxy's own LRU prefix index), LoRA ×4 (adapter home sets: see the README), shedding;
  **ours + queue** is ours with the pool's wait queue on (default bounds, TTL 30 s simulated): requests to a saturated pool wait
  in the proxy, critical first, and fail with 503 after the TTL (counted as failed).
- TTFT is measured by the client at the first streamed token; ITL is per request (end − first token) / (tokens − 1); tokens/s is
  successful output tokens over the span from the first send to the last completion; for the closed-loop
  workload it is the rate of completions between a warm-up (as many completions as users: the start, when
  every user sends at once into empty caches) and the last send (every user busy: throughput at saturation,
  without the drain at the end), and the headline ratio compares the medians of repeated alternating runs
  (` + "`-repeats`" + `). Cache hit is the simulator's
  ` + "`cached_tokens / prompt_tokens`" + ` from each response's usage.
- "adapter loaded" is ground truth from the simulator: the share of LoRA requests whose adapter was already resident in one of
  the replica's ` + "`max-loras`" + ` slots (running or idle) when the replica admitted them, so no adapter load was needed.

`

// whyMissed explains, per headline target, what limits it when a run
// misses it (what is known from earlier runs and the cost model; the
// numbers of this run are in the tables above).
var whyMissed = map[string]string{
	"throughput": `- **Shared-prefix throughput (≥ 1.8×)** is measured closed-loop while every user has a request open. Ours'
  edge is prefix-cache hits (fewer prefill tokens) and more sequences per batch because a group's requests
  share the prefix's KV blocks. What caps it is decode: in the simulator's cost model (an 8B model on one
  H100) a full batch of 16 sequences over ~4.6k-token contexts decodes at ~50 ms per step, so the 200 answer
  tokens cost ~0.7 s of replica time per request whatever the routing, next to ~1.1 s of prefill that a hit
  saves. Ours spends ~1.1 s of replica time per request (7.4 req/s on 8 replicas) against round robin's ~1.8 s.
  Routing is not what is left: raising the prefix weight to 4 or 6, removing the affinity load bound, or even
  giving every replica 4× the KV (hits 81 %) moved throughput only within run-to-run noise (1,455–1,543 vs
  1,444–1,456 tokens/s, single runs on 2026-11-23). Across runs the ratio was 1.57–1.84× (whole-run span)
  and 1.69× (saturated span).
`,
	"ttft": `- **Shared-prefix TTFT p90 (≥ 20×)**: ours' TTFT is bimodal — ~0.2 s for a prefix hit, 1.2–1.6 s for a cold
  4k-token prefill — so the p90 is a hit only while at most 51 of the 513 requests are slow. 32 are unavoidable
  (each group's first request), and each cold prefill holds its replica's token budget for about a second, so
  hits arriving there meanwhile wait too (~10–17 per run). Per-request dumps (` + "`-dump`" + `) on 2026-11-24: with
  plain rendezvous affinity 52–103 requests were slow (busy homes of 7 prefixes queued and evicted, the queue
  and KV scorers spilled hits into cold prefills elsewhere; p90 0.81–1.39 s, median 1.27 s over 6 runs);
  balancing hot prefixes over replicas brought that to 39–71 (p90 0.31–1.21 s, median 0.88 s over 9 runs),
  so the ratio clears 20× in about half the runs. What is left beyond the first
  requests and their convoys is load: prefixes are balanced by count, not by request rate, so near the end of
  the ramp the busiest home (~1.5× the mean) queues. Round robin's p90 itself moves by ±40 % between runs on
  this shared machine.
`,
	"parity": `- **4 proxies vs 1 (≤ 1.2×)**: as for round robin vs ours, the p90 is a prefix hit only while at most 51 of the
  513 requests are slow, 32 of them each group's first, so a handful of extra cold prefills moves it from ~0.5 s
  to ~1.2 s, on one proxy as on four. Four proxies used to pay extra cold prefills where their hot-prefix plans
  differed: each proxy planned over its own quarter of the traffic, so the plans agreed only once every proxy had
  had a request of every prefix (60–80 of the 90 s), and cache misses per run were 36–72 (median 47) on 4 proxies
  against 35–53 (median 38) on one (13 runs each). Now the proxies share their affinity keys through the control
  plane (fleet keys, see the README; here the real aggregator and clients over loopback gRPC), so every proxy
  plans a prefix from its first request to any of them. On 2026-11-24, 4 invocations of 5 runs each of the build
  before and after, alternating (20 runs per side; ` + "`-dump`" + ` per-request results): cache misses per run on 4 proxies
  median 43.5 before, 37.5 after (on one proxy 40.5 and 41), 4 proxies' TTFT p90 median 1.19 s before, 0.88 s after
  (below 0.7 s in 10 of 20 runs, before in 2), the 4-vs-1 ratio of medians 1.11× before (per invocation 0.91–1.81×),
  0.73× after (0.39–1.01×). On this shared machine a loaded minute
  adds slow requests to either side, and single runs vary by tens of
  percent, hence the median of repeated runs.
`,
	"scrape": `- **Scrape load (≤ 2×)**: each proxy scrapes every 50 ms × the proxy count it is told; a miss here means
  scrapers did not take up the longer interval within the measurement window.
`,
	"overload": `- **Overload, critical success (≥ 99 %)**: critical requests are never shed; failures here are timeouts of
  requests queued in overloaded replicas.
`,
	"lora": `- **LoRA placement (≥ 90 %)**: ground truth from the simulator (adapter resident at admission). Nearly all misses
  fall in the first simulated seconds: 16 adapters × 2 homes cost 32 unavoidable first loads (4.5 % of 712
  requests); each adapter's first request is placed by load (no server reports the adapter yet, so it cannot
  be told from a base model); and the home plan shifts while adapters appear. After that a replica's 4 slots
  hold its 4 home adapters and almost every request hits; ×4 proxies vary more.
`,
	"lora-balance": `- **LoRA balance (max/mean ≤ 1.5)**: adapter home sets concentrate an adapter's requests; an uneven draw of
  adapters over a short run loads some homes more.
`,
}

func secs(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.1f s", v)
	}
	return fmt.Sprintf("%.2f s", v)
}

func ms(v float64) string { return fmt.Sprintf("%.0f ms", 1000*v) }

// SVG draws TTFT p90 per workload (rows) and strategy (bars), log scale.
func (r *Report) SVG() string {
	var strategies []string
	var workloads []string
	for _, c := range r.Cells {
		if !slices.Contains(strategies, c.Strategy) {
			strategies = append(strategies, c.Strategy)
		}
		if !slices.Contains(workloads, c.Workload) {
			workloads = append(workloads, c.Workload)
		}
	}
	const (
		left, top, barH, gap, width = 150.0, 40.0, 14.0, 18.0, 560.0
	)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range r.Cells {
		if v := c.Summary.TTFT.P90; v > 0 {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0.01, 1
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	x := func(v float64) float64 {
		v = max(v, lo)
		return left + width*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	colors := []string{"#9e9e9e", "#bcaaa4", "#90caf9", "#ffb74d", "#2e7d32", "#66bb6a"}
	height := top + float64(len(workloads))*(float64(len(strategies))*barH+gap) + 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", left+width+40, height)
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14">TTFT p90 (simulated seconds, log scale) per workload and strategy</text>`+"\n", left)
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/><text x="%.1f" y="%.0f" text-anchor="middle">%g s</text>`+"\n",
			x(d), top-5, x(d), height-45, x(d), height-30, d)
	}
	y := top
	for _, w := range workloads {
		fmt.Fprintf(&b, `<text x="5" y="%.0f" font-weight="bold">%s</text>`+"\n", y+barH, w)
		for i, s := range strategies {
			c := r.cell(w, s)
			if c != nil {
				v := c.Summary.TTFT.P90
				fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="%.0f" fill="%s"/><text x="%.1f" y="%.0f">%s %s</text>`+"\n",
					left, y, max(x(v)-left, 1), barH-2, colors[i%len(colors)], x(v)+3, y+barH-4, s, secs(v))
			}
			y += barH
		}
		y += gap
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// classShift describes how one class fared without and with the wait
// queue: share served, TTFT p90 of those served, and requests that failed
// (with the queue: 503 after its TTL).
func classShift(off, on loadgen.Summary, class string) string {
	a, b := off.ByClass[class], on.ByClass[class]
	if a == nil || b == nil {
		return class + " –"
	}
	okRate := func(c *loadgen.ClassCounts) float64 { return 100 * float64(c.OK) / float64(c.Total) }
	return fmt.Sprintf("%s ok %.1f%% → %.1f%%, TTFT p90 %s → %s, failed %d → %d",
		class, okRate(a), okRate(b), secs(a.TTFT.P90), secs(b.TTFT.P90), a.Failed, b.Failed)
}
