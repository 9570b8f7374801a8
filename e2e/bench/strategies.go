package bench

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/e2e/modelsim"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Kind is a strategy's role in the report's verdicts.
type Kind int

// Kinds.
const (
	// Baseline strategies are what ours must match or beat: the best of
	// them per workload and metric is the summary matrix's reference.
	Baseline Kind = iota
	// Ours is the product's default picker (exactly one strategy).
	Ours
	// Variant strategies are ours configured or deployed differently
	// (wait queue, several proxies, KV events): reported, compared with
	// ours where a target says so, never a baseline.
	Variant
	// Oracle strategies read the simulator's ground truth: the limit of
	// what a picker could do, not something to beat.
	Oracle
)

func (k Kind) String() string {
	return [...]string{"baseline", "ours", "variant", "oracle"}[k]
}

// Env is what a strategy may know of the cell it runs in.
type Env struct {
	// Fleet is the cell's simulated fleet, fresh for the cell. Its ground
	// truth (caches, queues) is for oracles only: a picker that reads it
	// is not a picker a gateway could run.
	Fleet    *modelsim.Fleet
	Scenario *Scenario
	// TimeScale is wall seconds per simulated second.
	TimeScale float64
}

// Strategy is one way of picking, run with Proxies proxies.
type Strategy struct {
	Name string
	Kind Kind
	// About is one line for the report's "how to read this".
	About   string
	Proxies int
	// New returns the pool picker of one proxy in a cell; nil leaves the
	// proxy its own picker for the pool's profile (the default profile,
	// or whatever Configure makes of it).
	New func(env *Env) picker.Picker
	// Configure, when set, edits each proxy's snapshot resources (one
	// listener, route, pool backend, its endpoints and the objectives)
	// before they are compiled: say, to point the pool at an external
	// endpoint picker.
	Configure func(env *Env, resources []snapshotv1.Named) ([]snapshotv1.Named, error)
	// Start, when set, runs before the cell's proxies start (say, an
	// external picker process) and returns what stops it after the cell.
	Start func(ctx context.Context, env *Env) (stop func(), err error)
	// Queue, when set, turns the pool's wait queue on; its TTL is in
	// simulated time (scaled like the workload).
	Queue *snapshotv1.WaitQueue
	// Only, when set, limits the strategy to these workloads.
	Only []string
	// FleetKeys shares the proxies' prefix affinity keys through the
	// control plane's aggregator over loopback gRPC, as production proxies
	// do (see fleet.go).
	FleetKeys bool
	// NoScrape leaves the endpoints' metrics to the picker (the oracle
	// sets them from the simulator before every pick): the proxies scrape
	// once at the start only.
	NoScrape bool
}

// Registry collects the strategies of a run in report order; names are
// unique.
type Registry struct{ list []Strategy }

// Add registers s; a second strategy of the same name, one that sets
// neither New nor Configure (it would be ours under another name), or a
// second Ours is a programming error and panics.
func (r *Registry) Add(s Strategy) {
	for _, o := range r.list {
		if o.Name == s.Name {
			panic(fmt.Sprintf("bench: strategy %q registered twice", s.Name))
		}
		if s.Kind == Ours && o.Kind == Ours {
			panic(fmt.Sprintf("bench: strategies %q and %q are both Ours", o.Name, s.Name))
		}
	}
	if s.New == nil && s.Configure == nil || s.Proxies <= 0 {
		panic(fmt.Sprintf("bench: strategy %q needs New or Configure, and Proxies ≥ 1", s.Name))
	}
	if s.FleetKeys && s.New == nil {
		panic(fmt.Sprintf("bench: strategy %q shares fleet keys, which come from the pickers New returns", s.Name))
	}
	r.list = append(r.list, s)
}

// Strategies returns the registered strategies in order.
func (r *Registry) Strategies() []Strategy { return append([]Strategy(nil), r.list...) }

// registrars add the strategies of a run, in report order. A strategy
// kept in its own file (an external picker, KV events) adds its
// register function here.
func registrars() []func(*Registry) {
	return []func(*Registry){registerBaselines, registerOurs, registerApproxPrefix, registerEPP, registerPrecise, registerOracle}
}

// Strategies are every registered strategy, in report order.
func Strategies() []Strategy {
	r := &Registry{}
	for _, add := range registrars() {
		add(r)
	}
	return r.Strategies()
}

// Strategy names the verdicts refer to.
const (
	roundRobinName = "round-robin"
	oursName       = "ours"
	oursFourName   = "ours ×4 proxies"
)

func newOurs(*Env) picker.Picker {
	s, err := picker.FromProfile(nil)
	if err != nil {
		panic(err) // the default profile always builds
	}
	return s
}

func registerBaselines(r *Registry) {
	r.Add(Strategy{Name: roundRobinName, Kind: Baseline, Proxies: 1, About: "what a Kubernetes Service does",
		New: func(*Env) picker.Picker { return &picker.RoundRobin{} }})
	r.Add(Strategy{Name: "random", Kind: Baseline, Proxies: 1, About: "uniformly at random",
		New: func(*Env) picker.Picker { return picker.Random{} }})
	r.Add(Strategy{Name: "least-in-flight", Kind: Baseline, Proxies: 1, About: "the fewest requests this proxy has open (needs no metrics)",
		New: func(*Env) picker.Picker { return picker.LeastInFlight{} }})
	r.Add(Strategy{Name: "queue+kv", Kind: Baseline, Proxies: 1,
		About: "the reference picker's scorers without prefix affinity: min-max queue ×2 (with this proxy's sends since the scrape), 1 − KV ×2, shedding",
		New: func(*Env) picker.Picker {
			return picker.NewScheduler([]picker.WeightedScorer{
				{Scorer: picker.QueueScorer{}, Weight: 2}, {Scorer: picker.KVCacheScorer{}, Weight: 2}}, true)
		}})
}

func registerOurs(r *Registry) {
	r.Add(Strategy{Name: oursName, Kind: Ours, Proxies: 1, New: newOurs,
		About: "`picker.FromProfile(nil)`, the default a pool without a profile gets (README, \"Picking replicas\")"})
	// The wait queue with its default bounds; its 30 s default TTL is
	// given explicitly so it is scaled to simulated time. Only where the
	// fleet is overloaded: elsewhere the queue never holds anything back
	// and the cells would repeat "ours".
	r.Add(Strategy{Name: "ours + queue", Kind: Variant, Proxies: 1, New: newOurs, Only: []string{"overload"},
		Queue: &snapshotv1.WaitQueue{Ttl: durationpb.New(30 * time.Second)},
		About: "ours with the pool's wait queue on (default bounds, TTL 30 s simulated): requests to a saturated pool wait in the proxy, critical first, and fail with 503 after the TTL (counted as failed)"})
	r.Add(Strategy{Name: oursFourName, Kind: Variant, Proxies: 4, New: newOurs, FleetKeys: true,
		About: "ours on 4 proxies behind a round-robin L4 balancer, sharing fleet keys through the control plane's aggregator over loopback gRPC"})
}
