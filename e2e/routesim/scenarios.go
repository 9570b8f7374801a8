package routesim

import (
	"cmp"

	"github.com/infergate/infergate/e2e/bench"
)

// Scenario is a workload on a fleet.
type Scenario struct {
	Workload Workload
	Config   Config
	// SharedPrefixes marks workloads whose prompts repeat prefixes.
	SharedPrefixes bool
}

// Scenarios are the wall-clock benchmark's workloads and fleets
// (bench.SeededScenarios), drawn with seed.
func Scenarios(seed uint64) []Scenario {
	var out []Scenario
	for _, sc := range bench.SeededScenarios(bench.Full, seed) {
		n := cmp.Or(sc.Replicas, 8)
		cfg := Config{Replicas: make([]Replica, n), Adapters: sc.Fleet.LoRAModules}
		for i := range cfg.Replicas {
			ec := sc.Fleet.EngineConfig
			r := Replica{Engine: ec}
			if i < len(sc.Overrides) {
				o := sc.Overrides[i]
				r.Slow = o.SlowFactor
				r.Engine.KVBlocks = cmp.Or(o.KVBlocks, ec.KVBlocks)
				r.Engine.MaxNumSeqs = cmp.Or(o.MaxNumSeqs, ec.MaxNumSeqs)
			}
			cfg.Replicas[i] = r
		}
		out = append(out, Scenario{Workload: FromLoadgen(sc.Workload), Config: cfg, SharedPrefixes: sc.SharedPrefixes})
	}
	return out
}
