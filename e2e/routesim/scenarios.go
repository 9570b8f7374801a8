package routesim

import (
	"time"

	"github.com/infergate/infergate/e2e/bench"
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

// Scenarios are the wall-clock benchmark's workloads plus the shapes it
// lacked.
func Scenarios() []Scenario {
	var out []Scenario
	for _, sc := range bench.Scenarios(bench.Full) {
		cfg := Config{Replicas: fleet(8, sc.Fleet.EngineConfig), Adapters: sc.Fleet.LoRAModules}
		out = append(out, Scenario{Workload: FromLoadgen(sc.Workload), Config: cfg})
	}
	model := modelsim.DefaultModel
	out = append(out,
		Scenario{Workload: MultiTurn(MultiTurnConfig{Model: model, SystemTokens: 3000, Conversations: 200, Turns: 5,
			UserTokens: 150, AnswerTokens: 200, Rate: 2.5, Think: 5 * time.Second, Seed: 1}),
			Config: Config{Replicas: fleet(8, engine.Config{})}},
		Scenario{Workload: Zipf(ZipfConfig{Model: model, Prefixes: 64, S: 1.2, PrefixTokens: 2000, UserTokens: 200,
			Output: 150, Rate: 20, Duration: 60 * time.Second, Seed: 1}),
			Config: Config{Replicas: fleet(16, engine.Config{})}},
	)
	return out
}
