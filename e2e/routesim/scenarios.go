package routesim

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/infergate/infergate/e2e/loadgen"
	"github.com/infergate/infergate/e2e/modelsim"
	"github.com/infergate/infergate/e2e/modelsim/engine"
)

// Scenario is a workload on a fleet.
type Scenario struct {
	Workload Workload
	Config   Config
}

func fleet(n int, ec engine.Config) []Replica {
	out := make([]Replica, n)
	for i := range out {
		out[i] = Replica{Engine: ec}
	}
	return out
}

// Scenarios are the wall-clock benchmark's workload shapes plus the ones
// it lacked, generated from seed.
func Scenarios(seed uint64) []Scenario {
	model := modelsim.DefaultModel
	adapters := make([]string, 16)
	for i := range adapters {
		adapters[i] = fmt.Sprintf("adapter-%02d", i)
	}
	std := Config{Replicas: fleet(8, engine.Config{})}
	hetero := Config{Replicas: fleet(8, engine.Config{})}
	hetero.Replicas[0].Slow, hetero.Replicas[1].Slow = 2, 2
	hetero.Replicas[2].Engine.KVBlocks, hetero.Replicas[3].Engine.KVBlocks = 1024, 1024
	return []Scenario{
		{FromLoadgen(loadgen.SharedPrefix(model, loadgen.SharedPrefixConfig{Groups: 32, UsersPerGroup: 8, SystemTokens: 4000,
			QuestionTokens: 400, OutputTokens: 200, StartRate: 2, EndRate: 10, Duration: 90 * time.Second, Seed: seed})), std},
		{FromLoadgen(loadgen.SharedPrefix(model, loadgen.SharedPrefixConfig{Groups: 32, UsersPerGroup: 8, SystemTokens: 4000,
			QuestionTokens: 400, OutputTokens: 200, Concurrency: 192, Requests: 1000, Seed: seed + 4})), std},
		{FromLoadgen(loadgen.Mixed(model, loadgen.MixedConfig{MinPrompt: 50, MaxPrompt: 4000, MinOutput: 20, MaxOutput: 400,
			Rate: 8, Duration: 60 * time.Second, Seed: seed + 1})), std},
		{FromLoadgen(loadgen.LoRA(loadgen.LoRAConfig{Adapters: adapters, PromptTokens: 500, Output: 100, Rate: 16,
			Duration: 45 * time.Second, Seed: seed + 2})), Config{Replicas: fleet(8, engine.Config{MaxLoRAs: 4}), Adapters: adapters}},
		{FromLoadgen(loadgen.Overload(model, loadgen.OverloadConfig{PromptTokens: 500, Output: 100, Rate: 60, Critical: 0.2,
			Sheddable: 0.3, Duration: 30 * time.Second, Seed: seed + 3})), std},
		{MultiTurn(MultiTurnConfig{Model: model, SystemTokens: 3000, Conversations: 200, Turns: 5,
			UserTokens: 150, AnswerTokens: 200, Rate: 2.5, Think: 5 * time.Second, Seed: seed}), std},
		{Zipf(ZipfConfig{Name: "zipf", Model: model, Prefixes: 64, S: 1.2, PrefixTokens: 2000, UserTokens: 200,
			Output: 150, Rate: 20, Duration: 60 * time.Second, Seed: seed}), Config{Replicas: fleet(16, engine.Config{})}},
		// More live prefixes than the fleet's KV cache holds (96 × 3k
		// tokens against 8 × 32k).
		{Zipf(ZipfConfig{Name: "kv-pressure", Model: model, Prefixes: 96, S: 1.01, PrefixTokens: 3000, UserTokens: 200,
			Output: 150, Rate: 8, Duration: 60 * time.Second, Seed: seed}), std},
		// Two replicas at half speed, two with half the KV cache.
		{FromLoadgen(loadgen.SharedPrefix(model, loadgen.SharedPrefixConfig{Groups: 16, UsersPerGroup: 8, SystemTokens: 2000,
			QuestionTokens: 300, OutputTokens: 200, StartRate: 3, EndRate: 9, Duration: 60 * time.Second, Seed: seed + 5})).named("heterogeneous"), hetero},
		{Bursty(BurstyConfig{Model: model, Groups: 16, SystemTokens: 2000, UserTokens: 300, Output: 150, On: 8 * time.Second,
			Off: 12 * time.Second, Rate: 24, Duration: 80 * time.Second, Seed: seed}), std},
		{LongShort(LongShortConfig{Model: model, LongShare: 0.15, LongTokens: 6000, ShortTokens: 200, Output: 150,
			Rate: 10, Duration: 60 * time.Second, Seed: seed}), std},
	}
}

func (w Workload) named(n string) Workload { w.Name = n; return w }

// BurstyConfig shapes on/off traffic over shared prefixes.
type BurstyConfig struct {
	Model                    string
	Groups                   int
	SystemTokens, UserTokens int
	Output                   int
	On, Off                  time.Duration
	Rate                     float64 // while on
	Duration                 time.Duration
	Seed                     uint64
}

// Bursty: Poisson bursts of Rate for On, then silence for Off.
func Bursty(c BurstyConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 14))
	sys := make([]string, c.Groups)
	for i := range sys {
		sys[i] = fmt.Sprintf("Team %d handbook. ", i) + text(rng, c.SystemTokens*4)
	}
	w := Workload{Name: "bursty"}
	for start := time.Duration(0); start < c.Duration; start += c.On + c.Off {
		for _, at := range poisson(rng, c.Rate, c.On) {
			q := fmt.Sprintf("request %d: ", len(w.Jobs)) + text(rng, c.UserTokens*4)
			g := rng.IntN(c.Groups)
			w.Jobs = append(w.Jobs, Job{At: start + at, After: -1, Model: c.Model, MaxTokens: c.Output,
				Body: chat(c.Model, []message{{"system", sys[g]}, {"user", q}}, c.Output)})
		}
	}
	return w
}

// LongShortConfig shapes a mix of long-context and short requests.
type LongShortConfig struct {
	Model                   string
	LongShare               float64
	LongTokens, ShortTokens int
	Output                  int
	Rate                    float64
	Duration                time.Duration
	Seed                    uint64
}

// LongShort: unique prompts, a share of them long (a document to read),
// the rest short chat turns.
func LongShort(c LongShortConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 15))
	w := Workload{Name: "long-short"}
	for i, at := range poisson(rng, c.Rate, c.Duration) {
		n := c.ShortTokens
		if rng.Float64() < c.LongShare {
			n = c.LongTokens
		}
		q := fmt.Sprintf("request %d: ", i) + text(rng, n*4)
		w.Jobs = append(w.Jobs, Job{At: at, After: -1, Model: c.Model, MaxTokens: c.Output,
			Body: chat(c.Model, []message{{"user", q}}, c.Output)})
	}
	return w
}
