// Command routesim runs routing strategies over workloads in virtual time
// (package routesim) and prints, per workload, each strategy's medians over
// seeds.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/infergate/infergate/e2e/routesim"
)

func main() {
	only := flag.String("workloads", "", "comma-separated workload names (default all)")
	strats := flag.String("strategies", "", "comma-separated strategy names (default all)")
	seeds := flag.Int("seeds", 1, "runs per cell, each with its own workload seed; medians are printed")
	proxies := flag.Int("proxies", 1, "proxies sharing the traffic")
	flag.Parse()
	want := func(list, name string) bool {
		return list == "" || strings.Contains(","+list+",", ","+name+",")
	}
	all := append(routesim.Baselines(), routesim.Ours(), routesim.Oracle())
	type cell struct{ ttft50, ttft90, ttft99, e2e90, tok, hit, load []float64 }
	names := []string{}
	for _, sc := range routesim.Scenarios(1) {
		if want(*only, sc.Workload.Name) {
			names = append(names, sc.Workload.Name)
		}
	}
	for _, name := range names {
		fmt.Printf("\n## %s\n\n| strategy | TTFT p50 | p90 | p99 | E2E p90 | tok/s | hit | max/mean |\n|---|---:|---:|---:|---:|---:|---:|---:|\n", name)
		for _, st := range all {
			if !want(*strats, st.Name) {
				continue
			}
			var c cell
			for seed := range *seeds {
				var sc routesim.Scenario
				for _, x := range routesim.Scenarios(uint64(seed + 1)) {
					if x.Workload.Name == name {
						sc = x
					}
				}
				cfg := sc.Config
				cfg.Seed, cfg.Proxies = uint64(seed+1), *proxies
				out, err := routesim.Run(cfg, sc.Workload, st)
				if err != nil {
					fmt.Fprintln(os.Stderr, name, st.Name, err)
					continue
				}
				s := routesim.Summarize(sc.Workload, out, len(cfg.Replicas))
				tok := s.TokensPerSec
				if sc.Workload.Concurrency > 0 {
					tok = s.SteadyTokensPerSec
				}
				c.ttft50 = append(c.ttft50, s.TTFT.P50)
				c.ttft90 = append(c.ttft90, s.TTFT.P90)
				c.ttft99 = append(c.ttft99, s.TTFT.P99)
				c.e2e90 = append(c.e2e90, s.E2E.P90)
				c.tok = append(c.tok, tok)
				c.hit = append(c.hit, 100*s.CacheHit)
				c.load = append(c.load, s.MaxMeanLoad)
			}
			fmt.Printf("| %s | %.2f | %.2f | %.2f | %.2f | %.0f | %.1f%% | %.2f |\n", st.Name, med(c.ttft50), med(c.ttft90),
				med(c.ttft99), med(c.e2e90), med(c.tok), med(c.hit), med(c.load))
		}
	}
}

func med(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}
