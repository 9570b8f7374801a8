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
func Scenarios(size Size) []Scenario { return SeededScenarios(size, 0) }

// SeededScenarios are Scenarios with every workload seed moved by seed, for
// runs that repeat each workload on other draws of the same shape.
func SeededScenarios(size Size, seed uint64) []Scenario {
	const model = modelsim.DefaultModel
	adapters := make([]string, 16)
	for i := range adapters {
		adapters[i] = fmt.Sprintf("adapter-%02d", i)
	}
	d := func(full, smoke time.Duration) time.Duration {
		if size == Smoke {
			return smoke
		}
		return full
	}
	n := func(full, smoke int) int {
		if size == Smoke {
			return smoke
		}
		return full
	}
	defaults := modelsim.Config{EngineConfig: engineConfig(1)}
	return []Scenario{
		{Workload: loadgen.SharedPrefix(model, loadgen.SharedPrefixConfig{
			Groups: 32, UsersPerGroup: 8, SystemTokens: 4000, QuestionTokens: 400, OutputTokens: 200,
			StartRate: 2, EndRate: 10, Duration: d(90*time.Second, 4*time.Second), Seed: seed + 1}),
			Fleet: defaults, SharedPrefixes: true},
		// The same traffic closed-loop, so that every strategy is always
		// short of capacity: throughput here is what the fleet can serve,
		// not the arrival rate (the ramp above stays near saturation for
		// the TTFT comparison, so its tokens/s mostly echoes the load).
		// 192 users keep the 8 × 16 batch slots full with a queue behind.
		{Workload: loadgen.SharedPrefix(model, loadgen.SharedPrefixConfig{
			Groups: 32, UsersPerGroup: 8, SystemTokens: 4000, QuestionTokens: 400, OutputTokens: 200,
			Concurrency: 192, Requests: n(800, 40), Seed: seed + 5}),
			Fleet: defaults, SharedPrefixes: true},
		{Workload: loadgen.Mixed(model, loadgen.MixedConfig{
			MinPrompt: 50, MaxPrompt: 4000, MinOutput: 20, MaxOutput: 400, Rate: 8,
			Duration: d(60*time.Second, 4*time.Second), Seed: seed + 2}),
			Fleet: defaults},
		{Workload: loadgen.LoRA(loadgen.LoRAConfig{
			Adapters: adapters, PromptTokens: 500, Output: 100, Rate: 16,
			Duration: d(45*time.Second, 4*time.Second), Seed: seed + 3}),
			Fleet: modelsim.Config{LoRAModules: adapters, EngineConfig: engineConfig(4)}},
		{Workload: loadgen.Overload(model, loadgen.OverloadConfig{
			PromptTokens: 500, Output: 100, Rate: 60, Critical: 0.2, Sheddable: 0.3,
			Duration: d(30*time.Second, 3*time.Second), Seed: seed + 4}),
			Fleet: defaults},
		// Chat behind one long system prompt (longer than any fixed
		// affinity window): every conversation shares its 3,000 tokens,
		// and only the replica that served a conversation's last turn
		// holds the rest of its history. ~11 req/s at the peak: in a
		// virtual-time replay (engine.Core, no HTTP) round robin's TTFT
		// p90 is 0.45 s with 81 % cached, sending each conversation back
		// to its replica (new ones to the least loaded) 0.16 s with 92 %,
		// and all conversations to one replica 84 s.
		{Workload: loadgen.Conversations(model, loadgen.ConversationConfig{
			SystemTokens: 3000, StartRate: 2.2, Duration: d(75*time.Second, 3*time.Second),
			MinTurns: n(2, 2), MaxTurns: n(8, 3), UserTokens: loadgen.Range{Min: 40, Max: 200}, AnswerTokens: loadgen.Range{Min: 60, Max: 300},
			ThinkTime: d(6*time.Second, time.Second), Seed: seed + 6}),
			Fleet: defaults, SharedPrefixes: true},
		// Many prefixes, skewed: the most popular brings about a quarter
		// of 28 req/s, more than one of 16 replicas decodes (~4 req/s
		// each at these lengths).
		{Workload: loadgen.Population(model, loadgen.PopulationConfig{
			Name: "zipf-prefix", Purpose: "skewed prefix popularity on 16 replicas", Prefixes: 64, ZipfS: 1.1,
			PrefixTokens: loadgen.Range{Min: 1000, Max: 4000}, QuestionTokens: loadgen.Range{Min: 50, Max: 300},
			OutputTokens: loadgen.Range{Min: 50, Max: 250}, Arrivals: loadgen.Arrivals{Rate: 28},
			Duration: d(60*time.Second, 3*time.Second), Seed: seed + 7}),
			Fleet: defaults, Replicas: 16, FleetNote: "16 replicas", SharedPrefixes: true},
		// More live prefixes than the fleet holds: 96 prefixes of ~4k
		// tokens are ~1.5× the 8 × 32k tokens of KV cache, and a batch of
		// such prompts fills a replica's cache by itself. At 6 req/s round
		// robin (11 % cached) is near saturation: TTFT p90 6 s in a
		// virtual-time replay, 34 s at 8 req/s.
		{Workload: loadgen.Population(model, loadgen.PopulationConfig{
			Name: "kv-pressure", Purpose: "live prefixes beyond the fleet's KV cache", Prefixes: 96, ZipfS: 0.5,
			PrefixTokens: loadgen.Range{Min: 3000, Max: 5000}, QuestionTokens: loadgen.Range{Min: 50, Max: 200},
			OutputTokens: loadgen.Range{Min: 50, Max: 200}, Arrivals: loadgen.Arrivals{Rate: 6},
			Duration: d(90*time.Second, 3*time.Second), Seed: seed + 8}),
			Fleet: defaults, SharedPrefixes: true},
		// Two replicas at half speed, two with half the KV cache.
		{Workload: loadgen.Population(model, loadgen.PopulationConfig{
			Name: "heterogeneous", Purpose: "prefixes on unequal replicas", Prefixes: 24, ZipfS: 0.8,
			PrefixTokens: loadgen.Range{Min: 1500, Max: 3000}, QuestionTokens: loadgen.Range{Min: 50, Max: 300},
			OutputTokens: loadgen.Range{Min: 50, Max: 300}, Arrivals: loadgen.Arrivals{Rate: 11},
			Duration: d(60*time.Second, 3*time.Second), Seed: seed + 9}),
			Fleet: defaults, SharedPrefixes: true,
			Overrides: []modelsim.ReplicaOverride{{SlowFactor: 2}, {SlowFactor: 2}, {KVBlocks: 1024}, {KVBlocks: 1024}},
			FleetNote: "8 replicas; replicas 0 and 1 step at half speed (slow factor 2), replicas 2 and 3 have half the KV cache (1,024 blocks)"},
		// Bursts above what the fleet serves (~20 req/s), silence between.
		{Workload: loadgen.Population(model, loadgen.PopulationConfig{
			Name: "bursty", Purpose: "on/off bursts", Prefixes: 16, ZipfS: 0.7,
			PrefixTokens: loadgen.Range{Min: 2000, Max: 4000}, QuestionTokens: loadgen.Range{Min: 50, Max: 300},
			OutputTokens: loadgen.Range{Min: 50, Max: 250},
			Arrivals:     loadgen.Arrivals{Rate: 30, OnMean: d(3*time.Second, time.Second), OffMean: d(7*time.Second, time.Second)},
			Duration:     d(90*time.Second, 4*time.Second), Seed: seed + 10}),
			Fleet: defaults, SharedPrefixes: true},
		// A fifth of the requests bring one of six long documents (each a
		// fifth of a replica's KV cache); the rest are short and unique.
		{Workload: loadgen.LongShort(model, loadgen.LongShortConfig{
			Documents: 6, DocumentTokens: loadgen.Range{Min: 5000, Max: 7000}, LongShare: 0.2,
			QuestionTokens: loadgen.Range{Min: 30, Max: 100}, ShortTokens: loadgen.Range{Min: 50, Max: 800},
			LongOutputTokens: loadgen.Range{Min: 100, Max: 300}, ShortOutput: loadgen.Range{Min: 20, Max: 300},
			Arrivals: loadgen.Arrivals{Rate: 10}, Duration: d(60*time.Second, 3*time.Second), Seed: seed + 11}),
			Fleet: defaults, SharedPrefixes: true},
	}
}
