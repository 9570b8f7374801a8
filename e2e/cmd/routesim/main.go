// Command routesim runs the routing benchmark's workloads through the
// proxy's pickers in virtual time (package routesim): every workload with
// several seeds, every strategy, 1 and 4 proxies, and ours with engine
// speeds set wrong on purpose. It prints the summary and, with -out,
// writes routesim.md there.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/infergate/infergate/e2e/routesim"
)

func main() {
	only := flag.String("workloads", "", "comma-separated workload names (default all)")
	seeds := flag.Int("seeds", 5, "runs per cell, each with its own workload seed; medians are reported")
	out := flag.String("out", "", "directory to write routesim.md to (default: print only)")
	flag.Parse()
	start := time.Now()
	// The run takes minutes: a bad flag fails now, not after it.
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			fail(fmt.Errorf("-out: %w", err))
		}
	}
	var names, all []string
	shared := map[string]bool{}
	// closed maps the closed-loop workloads to their users.
	closed := map[string]int{}
	for _, sc := range routesim.Scenarios(0) {
		all = append(all, sc.Workload.Name)
		if *only == "" || strings.Contains(","+*only+",", ","+sc.Workload.Name+",") {
			names = append(names, sc.Workload.Name)
			shared[sc.Workload.Name] = sc.SharedPrefixes
			closed[sc.Workload.Name] = sc.Workload.Concurrency
		}
	}
	if *only != "" {
		for _, w := range strings.Split(*only, ",") {
			if !slices.Contains(all, w) {
				fail(fmt.Errorf("-workloads: no workload %q (have %s)", w, strings.Join(all, ", ")))
			}
		}
	}
	cells := plan(names, shared, closed)
	results := run(cells, *seeds)
	rep := report(names, shared, closed, results, *seeds, time.Since(start))
	fmt.Print(rep)
	if *out != "" {
		path := filepath.Join(*out, "routesim.md")
		if err := os.WriteFile(path, []byte(rep), 0o644); err != nil {
			fail(err)
		}
		fmt.Fprintln(os.Stderr, "wrote", path)
	}
}

// cell is one workload × strategy × proxy count.
type cell struct {
	workload string
	strategy routesim.Strategy
	proxies  int
	// noFleet: the proxies exchange nothing (the control plane's fleet
	// stream is down).
	noFleet bool
	// stagger spaces a closed loop's users' first requests
	// (routesim.Config.Stagger).
	stagger time.Duration
}

// noFleetName names ours on several proxies without the fleet exchange.
const noFleetName = "ours, no fleet exchange"

// variant is ours with profile parameters set.
type variant struct {
	name   string
	params map[string]string
}

// Speeds wrong on purpose: what a pool on other hardware with the default
// profile would see.
var variants = []variant{
	{"ours, prefill assumed 4× slower", map[string]string{"prefill-ms-per-1k-tokens": "1000"}},
	{"ours, prefill assumed 4× faster", map[string]string{"prefill-ms-per-1k-tokens": "62.5"}},
	{"ours, decode assumed 3× slower", map[string]string{"step-ms": "33", "step-ms-per-sequence": "1.35", "step-ms-per-1k-context": "1.2"}},
	{"ours, decode assumed 3× faster", map[string]string{"step-ms": "3.67", "step-ms-per-sequence": "0.15", "step-ms-per-1k-context": "0.133"}},
}

// slowEngine is ours told the engines prefill and decode 4× slower than
// they do — what the wall-clock benchmark's time scale 0.25 does to the
// default profile (its replicas run 4× faster than model time) — run on
// one proxy and on four.
var slowEngine = variant{"ours, engine assumed 4× slower", map[string]string{"prefill-ms-per-1k-tokens": "1000",
	"step-ms": "44", "step-ms-per-sequence": "1.8", "step-ms-per-1k-context": "1.6"}}

// staggers are the spacings of a closed loop's users' first requests
// that staggerSection compares (besides all at once): from a burst that
// outruns the fleet exchange's period (fleetv1.SendsEvery) many times
// over to one it keeps up with.
var staggers = []time.Duration{100 * time.Microsecond, 500 * time.Microsecond, 2 * time.Millisecond}

// staggeredName names ours with a closed loop's users d apart.
func staggeredName(d time.Duration) string { return fmt.Sprintf("ours, users %v apart", d) }

func plan(names []string, shared map[string]bool, closed map[string]int) []cell {
	var cells []cell
	for _, w := range names {
		if shared[w] && closed[w] > 0 {
			for _, d := range staggers {
				st := routesim.Strategy{Name: staggeredName(d), New: routesim.Ours().New}
				cells = append(cells, cell{workload: w, strategy: st, proxies: 1, stagger: d}, cell{workload: w, strategy: st, proxies: 4, stagger: d})
			}
		}
		for _, b := range routesim.Baselines() {
			cells = append(cells, cell{w, b, 1, false, 0})
		}
		cells = append(cells, cell{w, routesim.Ours(), 1, false, 0}, cell{w, routesim.Oracle(), 1, false, 0},
			cell{w, routesim.Ours(), 4, false, 0}, cell{w, routesim.Baselines()[2], 4, false, 0},
			cell{w, routesim.Precise(), 1, false, 0}, cell{w, routesim.Precise(), 4, false, 0},
			cell{w, routesim.Baselines()[3], 4, false, 0},
			cell{w, routesim.Strategy{Name: noFleetName, New: routesim.Ours().New}, 4, true, 0})
		for _, v := range variants {
			cells = append(cells, cell{w, routesim.Tuned(v.name, v.params), 1, false, 0})
		}
		slow := routesim.Tuned(slowEngine.name, slowEngine.params)
		cells = append(cells, cell{w, slow, 1, false, 0}, cell{w, slow, 4, false, 0})
	}
	return cells
}

// metrics are one run's numbers.
type metrics struct {
	ttft50, ttft90, ttft99, e2e50, e2e90, e2e99, itl50, tok, hit, load float64
}

type key struct {
	workload, strategy string
	proxies            int
}

// run runs every cell with every seed, on as many goroutines as cores.
func run(cells []cell, seeds int) map[key][]metrics {
	type job struct {
		c    cell
		seed int
	}
	jobs := make(chan job)
	var mu sync.Mutex
	res := map[key][]metrics{}
	var wg sync.WaitGroup
	done, total := 0, len(cells)*seeds
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				var sc routesim.Scenario
				for _, x := range routesim.Scenarios(uint64(j.seed)) {
					if x.Workload.Name == j.c.workload {
						sc = x
					}
				}
				cfg := sc.Config
				cfg.Seed, cfg.Proxies, cfg.NoFleet, cfg.Stagger = uint64(j.seed+1), j.c.proxies, j.c.noFleet, j.c.stagger
				out, err := routesim.Run(cfg, sc.Workload, j.c.strategy)
				mu.Lock()
				done++
				if done%50 == 0 || done == total {
					fmt.Fprintf(os.Stderr, "%d/%d runs\n", done, total)
				}
				mu.Unlock()
				if err != nil {
					fmt.Fprintln(os.Stderr, j.c.workload, j.c.strategy.Name, err)
					continue
				}
				s := routesim.Summarize(sc.Workload, out, len(cfg.Replicas))
				tok := s.TokensPerSec
				if sc.Workload.Concurrency > 0 {
					tok = s.SteadyTokensPerSec
				}
				m := metrics{s.TTFT.P50, s.TTFT.P90, s.TTFT.P99, s.E2E.P50, s.E2E.P90, s.E2E.P99, s.ITL.P50, tok, s.CacheHit, s.MaxMeanLoad}
				mu.Lock()
				k := key{j.c.workload, j.c.strategy.Name, j.c.proxies}
				res[k] = append(res[k], m)
				mu.Unlock()
			}
		}()
	}
	for seed := range seeds {
		for _, c := range cells {
			jobs <- job{c, seed}
		}
	}
	close(jobs)
	wg.Wait()
	return res
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "routesim:", err)
	os.Exit(1)
}
