// Command routesim runs routing strategies over workloads in virtual time
// (package routesim) and prints a table per workload.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/infergate/infergate/e2e/routesim"
)

func main() {
	only := flag.String("workloads", "", "comma-separated workload names (default all)")
	strats := flag.String("strategies", "", "comma-separated strategy names (default all)")
	seeds := flag.Int("seeds", 1, "runs per cell with different seeds")
	flag.Parse()
	want := func(list, name string) bool {
		return list == "" || strings.Contains(","+list+",", ","+name+",")
	}
	all := append(routesim.Baselines(), routesim.Ours(), routesim.Oracle())
	for _, sc := range routesim.Scenarios() {
		if !want(*only, sc.Workload.Name) {
			continue
		}
		fmt.Printf("\n## %s (%d jobs, %d replicas, %d proxies)\n\n", sc.Workload.Name, len(sc.Workload.Jobs), len(sc.Config.Replicas), max(sc.Config.Proxies, 1))
		fmt.Println("| strategy | ok | TTFT p50 | p90 | p99 | E2E p50 | p90 | p99 | ITL p50 | tok/s | hit | max/mean | wall |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, st := range all {
			if !want(*strats, st.Name) {
				continue
			}
			for seed := range *seeds {
				cfg := sc.Config
				cfg.Seed = uint64(seed + 1)
				t0 := time.Now()
				out, err := routesim.Run(cfg, sc.Workload, st)
				if err != nil {
					fmt.Fprintln(os.Stderr, st.Name, err)
					continue
				}
				s := routesim.Summarize(sc.Workload, out, len(cfg.Replicas))
				fmt.Printf("| %s | %d/%d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f ms | %.0f | %.1f%% | %.2f | %s |\n",
					st.Name, s.OK, s.Requests, s.TTFT.P50, s.TTFT.P90, s.TTFT.P99, s.E2E.P50, s.E2E.P90, s.E2E.P99,
					s.ITL.P50*1000, s.TokensPerSec, 100*s.CacheHit, s.MaxMeanLoad, time.Since(t0).Round(time.Millisecond))
			}
		}
	}
}
