// Package bench is the routing-quality benchmark: a fleet of simulated
// model servers (modelsim) behind in-process proxies (server.Manager, the
// real request path), driven by loadgen workloads, once per picking
// strategy in the same run, summarised as a Markdown report with an SVG
// plot.
//
// Proxies run in-process rather than as binaries: each strategy needs its
// own picker wired through server.Options.PickerFor, and 4 proxies then cost
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

// Strategy is one way of picking, run with Proxies proxies.
type Strategy struct {
	Name    string
	Proxies int
	// New returns the pool picker of one proxy.
	New func() picker.Picker
	// Queue, when set, turns the pool's wait queue on; its TTL is in
	// simulated time (scaled like the workload).
	Queue *snapshotv1.WaitQueue
	// Only, when set, limits the strategy to these workloads.
	Only []string
	// FleetKeys shares the proxies' prefix affinity keys through the
	// control plane's aggregator over loopback gRPC, as production proxies
	// do (see fleet.go).
	FleetKeys bool
}

// Strategies are the baselines and ours, in report order.
func Strategies() []Strategy {
	ours := func() picker.Picker {
		s, err := picker.FromProfile(nil)
		if err != nil {
			panic(err) // the default profile always builds
		}
		return s
	}
	return []Strategy{
		{Name: "round-robin", Proxies: 1, New: func() picker.Picker { return &picker.RoundRobin{} }},
		{Name: "random", Proxies: 1, New: func() picker.Picker { return picker.Random{} }},
		{Name: "least-in-flight", Proxies: 1, New: func() picker.Picker { return picker.LeastInFlight{} }},
		{Name: "queue+kv", Proxies: 1, New: func() picker.Picker {
			// The reference scorers without prefix affinity: plain min-max
			// queue (no spread floor) and KV, shedding like the reference.
			return picker.NewScheduler([]picker.WeightedScorer{
				{Scorer: picker.QueueScorer{}, Weight: 2}, {Scorer: picker.KVCacheScorer{}, Weight: 2}}, true)
		}},
		{Name: oursName, Proxies: 1, New: ours},
		// The wait queue with its default bounds; its 30 s default TTL is
		// given explicitly so it is scaled to simulated time.
		// Only where the fleet is overloaded: elsewhere the queue never
		// holds anything back and the cells would repeat "ours".
		{Name: "ours + queue", Proxies: 1, New: ours, Queue: &snapshotv1.WaitQueue{Ttl: durationpb.New(30 * time.Second)}, Only: []string{"overload"}},
		{Name: oursFourName, Proxies: 4, New: ours, FleetKeys: true},
	}
}

// Scenario is a workload with the fleet it runs on.
type Scenario struct {
	Workload loadgen.Workload
	// Fleet shapes the replicas (LoRA adapters, KV size).
	Fleet modelsim.Config
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
	// Repeats is how many runs each comparison of Repeats() gets (default
	// 1: the grid's own cells). One run's TTFT p90 or throughput varies by
	// tens of percent on a shared machine; the ratio of medians over
	// alternating runs much less.
	Repeats int
	Logger  *slog.Logger
	// Progress, when set, gets one line per finished cell.
	Progress func(string)
	// Results, when set, gets every cell's per-request results with the
	// workload they replay (for loadgen.WriteCSV).
	Results func(c *Cell, w loadgen.Workload, rs []loadgen.Result)
}

// Cell is one workload × strategy result.
type Cell struct {
	Workload, Strategy string
	Proxies            int
	Summary            loadgen.Summary
	// LoRALoaded is the fraction of LoRA requests admitted on a replica that
	// had their adapter loaded already (no load needed; LoRA workload only).
	LoRALoaded float64
	Imbalance  float64 // max/mean successful requests per replica
	// Closed is set for closed-loop workloads, whose throughput is the
	// steady one (Summary.SteadyTokensPerSec).
	Closed bool
	Wall   time.Duration
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
	Replicas    int
	TimeScale   float64
	Scenarios   []Scenario
	Cells       []Cell
	ScrapeRates []ScrapeRate
	// Repeated holds the runs of the comparisons in Repeats(), the grid's
	// cells first.
	Repeated   []Repeat
	Started    time.Time
	Wall       time.Duration
	GoMaxProcs int
}

// Run runs every scenario with every strategy.
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
	rep := &Report{Replicas: o.Replicas, TimeScale: o.TimeScale, Scenarios: o.Scenarios, Started: time.Now(), GoMaxProcs: runtime.GOMAXPROCS(0)}
	for _, sc := range o.Scenarios {
		for _, st := range o.Strategies {
			if st.Only != nil && !slices.Contains(st.Only, sc.Workload.Name) {
				continue
			}
			cell, err := runCell(ctx, o, sc, st)
			if err != nil {
				return rep, fmt.Errorf("%s / %s: %w", sc.Workload.Name, st.Name, err)
			}
			rep.Cells = append(rep.Cells, *cell)
			if o.Progress != nil {
				s := cell.Summary
				line := fmt.Sprintf("%-14s %-16s ok %4d/%-4d ttft p50 %6.3fs p90 %8.3fs  tok/s %7.0f  cache %5.1f%%  max/mean %.2f",
					sc.Workload.Name, st.Name, s.OK, s.Requests, s.TTFT.P50, s.TTFT.P90, cell.TokensPerSec(), 100*s.CacheHit, cell.Imbalance)
				if len(sc.Fleet.LoRAModules) > 0 {
					line += fmt.Sprintf("  adapter loaded %5.1f%%", 100*cell.LoRALoaded)
				}
				o.Progress(fmt.Sprintf("%s (%s)", line, cell.Wall.Round(time.Second/10)))
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

// Strategy names the repeated comparisons use.
const (
	roundRobinName = "round-robin"
	oursName       = "ours"
	oursFourName   = "ours ×4 proxies"
)

// Repeat is a comparison of two strategies on one workload whose single
// runs vary by more than its target's margin; both run alternately and the
// report compares medians.
type Repeat struct {
	Workload   string
	Strategies [2]string
	Runs       [2][]Cell
}

// Repeats are the comparisons a run repeats: ours on 1 vs 4 proxies on the
// shared-prefix workload (TTFT p90), and round robin vs ours at saturation
// (throughput).
func Repeats() []Repeat {
	return []Repeat{
		{Workload: "shared-prefix", Strategies: [2]string{oursName, oursFourName}},
		{Workload: "shared-prefix-saturated", Strategies: [2]string{roundRobinName, oursName}},
	}
}

// runRepeats repeats each comparison's cells, alternating, until each side
// has o.Repeats results.
func runRepeats(ctx context.Context, o Options, rep *Report) error {
	for _, rp := range Repeats() {
		var sc *Scenario
		for i := range o.Scenarios {
			if o.Scenarios[i].Workload.Name == rp.Workload {
				sc = &o.Scenarios[i]
			}
		}
		var sts [2]*Strategy
		for i := range o.Strategies {
			for k, name := range rp.Strategies {
				if o.Strategies[i].Name == name {
					sts[k] = &o.Strategies[i]
				}
			}
		}
		if sc == nil || sts[0] == nil || sts[1] == nil {
			continue
		}
		for k, st := range sts {
			if c := rep.cell(sc.Workload.Name, st.Name); c != nil {
				rp.Runs[k] = append(rp.Runs[k], *c)
			}
		}
		for run := len(rp.Runs[0]); run < o.Repeats; run++ {
			for k, st := range sts {
				cell, err := runCell(ctx, o, *sc, *st)
				if err != nil {
					return fmt.Errorf("repeat %s / %s: %w", rp.Workload, st.Name, err)
				}
				rp.Runs[k] = append(rp.Runs[k], *cell)
				if o.Progress != nil {
					o.Progress(fmt.Sprintf("repeat %d/%d %s %-16s ttft p90 %6.3fs  tok/s %7.0f  cache %5.1f%%", run+1, o.Repeats, rp.Workload, st.Name,
						cell.Summary.TTFT.P90, cell.TokensPerSec(), 100*cell.Summary.CacheHit))
				}
			}
		}
		rep.Repeated = append(rep.Repeated, rp)
	}
	return nil
}

func startFleet(ctx context.Context, o Options, fc modelsim.Config) (*modelsim.Fleet, error) {
	fc.TimeScale = o.TimeScale
	listen := make([]string, o.Replicas)
	for i := range listen {
		listen[i] = "127.0.0.1:0"
	}
	return modelsim.StartFleet(ctx, modelsim.FleetConfig{Config: fc, Listen: listen, NamePrefix: "replica", ShutdownTimeout: time.Second})
}

func runCell(ctx context.Context, o Options, sc Scenario, st Strategy) (*Cell, error) {
	t0 := time.Now()
	fleet, err := startFleet(ctx, o, sc.Fleet)
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	newPicker := func(*config.Backend) picker.Picker { return st.New() }
	// The reference scrape interval is 50 ms of model time.
	interval := time.Duration(float64(50*time.Millisecond) * o.TimeScale)
	var queue *snapshotv1.WaitQueue
	if st.Queue != nil {
		queue = proto.CloneOf(st.Queue)
		if ttl := st.Queue.GetTtl(); ttl != nil {
			queue.Ttl = durationpb.New(time.Duration(float64(ttl.AsDuration()) * o.TimeScale))
		}
	}
	pools := make([]*proxyPools, st.Proxies)
	pickerOf := func(i int) func(*config.Backend) picker.Picker {
		pools[i] = &proxyPools{}
		return pools[i].capture(newPicker)
	}
	proxies, err := startProxies(st.Proxies, fleet.Addrs(), pickerOf, queue, interval, o.Logger)
	if err != nil {
		return nil, err
	}
	defer closeProxies(proxies)
	if st.FleetKeys {
		stop, err := startFleetKeys(pools, o.Logger)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	// Let every proxy scrape once before traffic starts.
	time.Sleep(max(3*interval*time.Duration(st.Proxies), 50*time.Millisecond))
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
	cell := &Cell{Workload: sc.Workload.Name, Strategy: st.Name, Proxies: st.Proxies, Summary: loadgen.Summarize(rs, o.TimeScale)}
	cell.Imbalance = cell.Summary.LoadImbalance(o.Replicas)
	cell.Closed = sc.Workload.Concurrency > 0
	cell.LoRALoaded = loraPlacement(fleet)
	cell.Wall = time.Since(t0)
	if o.Results != nil {
		o.Results(cell, sc.Workload, rs)
	}
	return cell, nil
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
	fleet, err := startFleet(ctx, o, modelsim.Config{})
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
