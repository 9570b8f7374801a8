// Package bench is the routing-quality benchmark: a fleet of simulated
// model servers (modelsim) behind in-process proxies (server.Manager, the
// real request path), driven by loadgen workloads, once per picking
// strategy in the same run, summarised as a Markdown report with an SVG
// plot.
//
// Proxies run in-process rather than as binaries: each strategy needs its
// own picker wired through pipeline.Options.PickerFor, and 4 proxies then cost
// 4 Managers instead of 4 processes plus a control plane on a 2-core machine.
// The request path (listener, router, picker, upstream, SSE copy) is the
// proxy binary's.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/e2e/loadgen"
	"github.com/infergate/infergate/e2e/modelsim"
	"github.com/infergate/infergate/e2e/modelsim/engine"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Scenario is a workload with the fleet it runs on.
type Scenario struct {
	Workload loadgen.Workload
	// Fleet shapes the replicas (LoRA adapters, KV size).
	Fleet modelsim.Config
	// Replicas is the fleet's size (0: Options.Replicas) and Overrides
	// change single replicas (a heterogeneous fleet).
	Replicas  int
	Overrides []modelsim.ReplicaOverride
	// Fleet describes the replicas for the report when they are not the
	// default ones.
	FleetNote string
	// SharedPrefixes marks workloads whose prompts repeat prefixes, where
	// ours is held to the oracle.
	SharedPrefixes bool
}

// Options of a benchmark run.
type Options struct {
	Replicas  int     // default 8
	TimeScale float64 // wall seconds per simulated second
	Scenarios []Scenario
	// Strategies default to Strategies().
	Strategies []Strategy
	// ScrapeProxies are the proxy counts of the scrape-rate measurement
	// (none when empty) and ScrapeWindow its length (default 2 s).
	ScrapeProxies []int
	ScrapeWindow  time.Duration
	// Repeats is how many runs in all the cells of a comparison whose
	// verdict is in doubt get (default 1: the grid's own cells). One run's
	// TTFT p90 or throughput varies by tens of percent on a shared
	// machine; the median over alternating runs much less.
	Repeats int
	Logger  *slog.Logger
	// Progress, when set, gets one line per finished cell.
	Progress func(string)
	// Results, when set, gets every cell's per-request results with the
	// workload they replay (for loadgen.WriteCSV).
	Results func(c *Cell, w loadgen.Workload, rs []loadgen.Result)
}

// Cell is one run of a workload × strategy.
type Cell struct {
	Workload, Strategy string
	Kind               Kind
	Proxies            int
	// Run numbers the runs of the same workload × strategy from 1 (the
	// grid's).
	Run     int
	Summary loadgen.Summary
	// LoRALoaded is the fraction of LoRA requests admitted on a replica that
	// had their adapter loaded already (no load needed; LoRA workload only).
	LoRALoaded float64
	Imbalance  float64 // max/mean successful requests per replica
	// Closed is set for closed-loop workloads, whose throughput is the
	// steady one (Summary.SteadyTokensPerSec).
	Closed bool
	// Requests are the successful requests' outcomes, for explaining a
	// missed target.
	Requests []Outcome
	Wall     time.Duration
}

// Outcome is one successful request in simulated seconds.
type Outcome struct {
	// Start is when it was sent, from the run's start.
	Start, TTFT, E2E       float64
	Prompt, Cached, Output int
	Replica                string
}

// TokensPerSec is the cell's throughput: while saturated for closed-loop
// workloads, over the whole run otherwise.
func (c *Cell) TokensPerSec() float64 {
	if c.Closed {
		return c.Summary.SteadyTokensPerSec
	}
	return c.Summary.TokensPerSec
}

// ScrapeRate is the per-server scrape rate seen with a number of proxies.
type ScrapeRate struct {
	Proxies int
	// PerServer is scrapes per second per model server (wall).
	PerServer float64
}

// Report is a whole run.
type Report struct {
	Replicas   int
	TimeScale  float64
	Scenarios  []Scenario
	Strategies []Strategy
	// Cells are every run, the grid's first.
	Cells       []Cell
	ScrapeRates []ScrapeRate
	// Repeated lists, per workload, the strategies repeated because a
	// verdict involving them was in doubt after the grid.
	Repeated map[string][]string
	Repeats  int
	// Load is the machine's 1-minute load average after each cell.
	Load       []float64
	Started    time.Time
	Wall       time.Duration
	GoMaxProcs int
}

// Run runs every scenario with every strategy, then repeats the cells of
// the comparisons in doubt.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Replicas <= 0 {
		o.Replicas = 8
	}
	if o.TimeScale <= 0 {
		o.TimeScale = 1
	}
	if o.Strategies == nil {
		o.Strategies = Strategies()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ScrapeWindow <= 0 {
		o.ScrapeWindow = 2 * time.Second
	}
	o.Repeats = max(o.Repeats, 1)
	rep := &Report{Replicas: o.Replicas, TimeScale: o.TimeScale, Scenarios: o.Scenarios, Strategies: o.Strategies,
		Repeats: o.Repeats, Repeated: map[string][]string{}, Started: time.Now(), GoMaxProcs: runtime.GOMAXPROCS(0)}
	for i := range o.Scenarios {
		sc := &o.Scenarios[i]
		for _, st := range o.Strategies {
			if st.Only != nil && !slices.Contains(st.Only, sc.Workload.Name) {
				continue
			}
			if err := rep.run(ctx, o, sc, st); err != nil {
				return rep, err
			}
		}
	}
	if err := runRepeats(ctx, o, rep); err != nil {
		return rep, err
	}
	for _, n := range o.ScrapeProxies {
		r, err := measureScrapes(ctx, o, n)
		if err != nil {
			return rep, err
		}
		rep.ScrapeRates = append(rep.ScrapeRates, r)
		if o.Progress != nil {
			o.Progress(fmt.Sprintf("scrape rate with %2d proxies: %.1f scrapes/s per server", n, r.PerServer))
		}
	}
	rep.Wall = time.Since(rep.Started)
	return rep, nil
}

// run runs one cell and records it.
func (r *Report) run(ctx context.Context, o Options, sc *Scenario, st Strategy) error {
	cell, err := runCell(ctx, o, sc, st)
	if err != nil {
		return fmt.Errorf("%s / %s: %w", sc.Workload.Name, st.Name, err)
	}
	cell.Run = len(r.runs(sc.Workload.Name, st.Name)) + 1
	r.Cells = append(r.Cells, *cell)
	if l, ok := loadAverage(); ok {
		r.Load = append(r.Load, l)
	}
	if o.Progress != nil {
		s := cell.Summary
		line := fmt.Sprintf("%-22s %-16s run %d  ok %4d/%-4d ttft p50 %6.3fs p90 %7.3fs p99 %7.3fs  e2e p90 %7.2fs  tok/s %6.0f  cache %5.1f%%  max/mean %.2f",
			sc.Workload.Name, st.Name, cell.Run, s.OK, s.Requests, s.TTFT.P50, s.TTFT.P90, s.TTFT.P99, s.E2E.P90, cell.TokensPerSec(), 100*s.CacheHit, cell.Imbalance)
		if len(sc.Fleet.LoRAModules) > 0 {
			line += fmt.Sprintf("  adapter loaded %5.1f%%", 100*cell.LoRALoaded)
		}
		o.Progress(fmt.Sprintf("%s (%s)", line, cell.Wall.Round(time.Second/10)))
	}
	return nil
}

func startFleet(ctx context.Context, o Options, sc *Scenario) (*modelsim.Fleet, error) {
	fc := sc.Fleet
	fc.TimeScale = o.TimeScale
	n := sc.Replicas
	if n <= 0 {
		n = o.Replicas
	}
	listen := make([]string, n)
	for i := range listen {
		listen[i] = "127.0.0.1:0"
	}
	return modelsim.StartFleet(ctx, modelsim.FleetConfig{Config: fc, Listen: listen, NamePrefix: "replica",
		ShutdownTimeout: time.Second, Overrides: sc.Overrides})
}

// noScrapeInterval is the scrape interval of strategies whose picker sets
// the metrics itself: one scrape at the start, none during a cell.
const noScrapeInterval = time.Hour

func runCell(ctx context.Context, o Options, sc *Scenario, st Strategy) (*Cell, error) {
	t0 := time.Now()
	fleet, err := startFleet(ctx, o, sc)
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	env := &Env{Fleet: fleet, Scenario: sc, TimeScale: o.TimeScale}
	if st.Start != nil {
		stop, err := st.Start(ctx, env)
		if err != nil {
			return nil, fmt.Errorf("start: %w", err)
		}
		defer stop()
	}
	// The reference scrape interval is 50 ms of model time.
	interval := scaled(50*time.Millisecond, o.TimeScale)
	if st.NoScrape {
		interval = noScrapeInterval
	}
	var queue *snapshotv1.WaitQueue
	if st.Queue != nil {
		queue = proto.CloneOf(st.Queue)
		if ttl := st.Queue.GetTtl(); ttl != nil {
			queue.Ttl = durationpb.New(scaled(ttl.AsDuration(), o.TimeScale))
		}
	}
	ps := &proxySetup{addrs: fleet.Addrs(), queue: queue, scrapeInterval: interval, logger: o.Logger}
	pools := make([]*proxyPools, st.Proxies)
	if st.New != nil {
		newPicker := func(*config.Backend) picker.Picker { return st.New(env) }
		ps.pickerOf = func(i int) func(*config.Backend) picker.Picker {
			pools[i] = &proxyPools{}
			return pools[i].capture(newPicker)
		}
	}
	if st.Configure != nil {
		ps.configure = func(rs []snapshotv1.Named) ([]snapshotv1.Named, error) { return st.Configure(env, rs) }
	}
	proxies, err := startProxies(st.Proxies, ps)
	if err != nil {
		return nil, err
	}
	defer closeProxies(proxies)
	if st.FleetKeys {
		stop, err := startFleetKeys(pools, o.TimeScale, o.Logger)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	// Let every proxy scrape once before traffic starts.
	time.Sleep(max(3*min(interval, 50*time.Millisecond)*time.Duration(st.Proxies), 50*time.Millisecond))
	targets := make([]string, len(proxies))
	for i, p := range proxies {
		targets[i] = p.url
	}
	rs, err := loadgen.Run(ctx, sc.Workload, loadgen.Options{Targets: targets, TimeScale: o.TimeScale,
		Timeout: time.Duration(float64(10*time.Minute) * o.TimeScale)})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cell := &Cell{Workload: sc.Workload.Name, Strategy: st.Name, Kind: st.Kind, Proxies: st.Proxies,
		Summary: loadgen.Summarize(rs, o.TimeScale)}
	cell.Imbalance = cell.Summary.LoadImbalance(fleet.Len())
	cell.Closed = sc.Workload.Concurrency > 0
	cell.LoRALoaded = loraPlacement(fleet)
	cell.Requests = outcomes(rs, o.TimeScale)
	cell.Wall = time.Since(t0)
	if o.Results != nil {
		o.Results(cell, sc.Workload, rs)
	}
	return cell, nil
}

// outcomes keeps the successful requests' numbers.
func outcomes(rs []loadgen.Result, timeScale float64) []Outcome {
	var out []Outcome
	for i := range rs {
		r := &rs[i]
		if r.OK() {
			out = append(out, Outcome{Start: r.Start.Seconds() / timeScale, TTFT: r.TTFT.Seconds() / timeScale, E2E: r.E2E.Seconds() / timeScale,
				Prompt: r.PromptTokens, Cached: r.CachedTokens, Output: r.OutputTokens, Replica: r.Replica})
		}
	}
	return out
}

// loraPlacement is the fraction of the fleet's LoRA requests whose adapter
// was already resident in a slot of the replica when it admitted them
// (simulator ground truth; 0 without LoRA requests).
func loraPlacement(f *modelsim.Fleet) float64 {
	var resident, all int64
	for _, r := range f.Replicas() {
		c := r.Stats().LoRA
		resident += c.Resident
		all += c.Resident + c.Loaded
	}
	if all == 0 {
		return 0
	}
	return float64(resident) / float64(all)
}

// measureScrapes runs n proxies' endpoint registries (what scrapes) against
// an idle fleet for the scrape window and returns the per-server rate.
func measureScrapes(ctx context.Context, o Options, n int) (ScrapeRate, error) {
	fleet, err := startFleet(ctx, o, &Scenario{})
	if err != nil {
		return ScrapeRate{}, err
	}
	defer fleet.Close()
	var specs []endpoints.Spec
	for _, a := range fleet.Addrs() {
		specs = append(specs, endpoints.Spec{Address: a, MetricsAddress: a, EngineType: "vllm", Scrape: true})
	}
	before := totalScrapes(fleet)
	for range n {
		reg := endpoints.NewRegistry(o.Logger, endpoints.Options{Proxies: n})
		reg.Sync(specs)
		defer reg.Close()
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ScrapeRate{}, ctx.Err()
	case <-time.After(o.ScrapeWindow):
	}
	got := totalScrapes(fleet) - before
	return ScrapeRate{Proxies: n, PerServer: float64(got) / time.Since(t0).Seconds() / float64(fleet.Len())}, nil
}

func totalScrapes(f *modelsim.Fleet) int64 {
	var t int64
	for _, r := range f.Replicas() {
		t += r.Stats().Scrapes
	}
	return t
}

// engineConfig is the replica sizing of the benchmark: vLLM defaults (16
// sequences, 2,048 KV blocks of 16 tokens = 32k tokens per replica).
func engineConfig(maxLoRAs int) engine.Config {
	return engine.Config{MaxLoRAs: maxLoRAs}
}
