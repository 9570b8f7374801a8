package bench

import (
	"fmt"
	"time"

	"github.com/infergate/infergate/e2e/loadgen"
	"github.com/infergate/infergate/e2e/modelsim"
)

// Size scales the scenarios: Full is the benchmark, Smoke a few-second
// check of the harness.
type Size int

// Sizes.
const (
	Full Size = iota
	Smoke
)

// Scenarios returns the benchmark's workloads with fixed seeds. Rates are
// chosen against the simulated replica (vLLM defaults on an H100-class
// cost model): one replica decodes ~16 sequences at ~45 ms per step and
// prefills ~4k tokens per second, so the shared-prefix load needs its
// prefix cache to keep up, and the overload workload asks 3× what the
// fleet serves.
func Scenarios(size Size) []Scenario {
	const model = modelsim.DefaultModel
	d := func(full, smoke time.Duration) time.Duration {
		if size == Smoke {
			return smoke
		}
		return full
	}
	adapters := make([]string, 16)
	for i := range adapters {
		adapters[i] = fmt.Sprintf("adapter-%02d", i)
	}
	return []Scenario{
		{Workload: loadgen.SharedPrefix(model, loadgen.SharedPrefixConfig{
			Groups: 32, UsersPerGroup: 8, SystemTokens: 4000, QuestionTokens: 400, OutputTokens: 200,
			StartRate: 2, EndRate: 10, Duration: d(90*time.Second, 4*time.Second), Seed: 1}),
			Fleet: modelsim.Config{EngineConfig: engineConfig(1)}},
		// The same traffic closed-loop, so that every strategy is always
		// short of capacity: throughput here is what the fleet can serve,
		// not the arrival rate (the ramp above stays near saturation for
		// the TTFT comparison, so its tokens/s mostly echoes the load).
		// 192 users keep the 8 × 16 batch slots full with a queue behind.
		{Workload: loadgen.SharedPrefix(model, loadgen.SharedPrefixConfig{
			Groups: 32, UsersPerGroup: 8, SystemTokens: 4000, QuestionTokens: 400, OutputTokens: 200,
			Concurrency: 192, Requests: map[Size]int{Full: 1000, Smoke: 40}[size], Seed: 5}),
			Fleet: modelsim.Config{EngineConfig: engineConfig(1)}},
		{Workload: loadgen.Mixed(model, loadgen.MixedConfig{
			MinPrompt: 50, MaxPrompt: 4000, MinOutput: 20, MaxOutput: 400, Rate: 8,
			Duration: d(60*time.Second, 4*time.Second), Seed: 2}),
			Fleet: modelsim.Config{EngineConfig: engineConfig(1)}},
		{Workload: loadgen.LoRA(loadgen.LoRAConfig{
			Adapters: adapters, PromptTokens: 500, Output: 100, Rate: 16,
			Duration: d(45*time.Second, 4*time.Second), Seed: 3}),
			Fleet: modelsim.Config{LoRAModules: adapters, EngineConfig: engineConfig(4)}},
		{Workload: loadgen.Overload(model, loadgen.OverloadConfig{
			PromptTokens: 500, Output: 100, Rate: 60, Critical: 0.2, Sheddable: 0.3,
			Duration: d(30*time.Second, 3*time.Second), Seed: 4}),
			Fleet: modelsim.Config{EngineConfig: engineConfig(1)}},
	}
}
