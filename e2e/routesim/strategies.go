package routesim

import (
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/e2e/bench"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Baselines returns the comparison strategies: what a Kubernetes Service
// does, the proxy's own open-request count, and the reference picker's
// load scorers without prefix affinity.
func Baselines() []Strategy {
	return []Strategy{
		{Name: "round-robin", New: func(*Env, int) picker.Picker { return &picker.RoundRobin{} }},
		{Name: "least-in-flight", New: func(*Env, int) picker.Picker { return &picker.LeastInFlight{} }},
		{Name: "queue+kv", New: func(*Env, int) picker.Picker {
			return picker.NewScheduler([]picker.WeightedScorer{
				{Scorer: picker.QueueScorer{}, Weight: 2}, {Scorer: picker.KVCacheScorer{}, Weight: 2}}, true)
		}},
		{Name: "approx-prefix", New: func(env *Env, proxy int) picker.Picker {
			// The reference picker's default profile (e2e/bench); its
			// random tie-breaks seeded so that a replay repeats.
			return bench.NewApproxPrefix(env.blockSize(), env.kvBlocks, env.Now, uint64(proxy)+1)
		}},
	}
}

// Tuned is ours with profile parameters set (e.g. engine speeds that are
// wrong for the fleet, to show what a misestimate costs).
func Tuned(name string, params map[string]string) Strategy {
	return Strategy{Name: name, New: func(*Env, int) picker.Picker {
		s, err := picker.FromProfile(&snapshotv1.PickerProfile{ShedSheddable: true,
			Scorers: []*snapshotv1.PluginRef{{Name: "cost", Weight: 1, Parameters: params}}})
		if err != nil {
			panic(err)
		}
		return s
	}}
}

// Ours is the pool's default profile, as a proxy builds it.
func Ours() Strategy {
	return Strategy{Name: "ours", New: func(*Env, int) picker.Picker { return mustDefault() }}
}

// Oracle is ours fed perfect information: every replica's true queue,
// batch and KV use at the moment of each pick, and its true cached prefix
// of the request.
func Oracle() Strategy {
	return Strategy{Name: "oracle", Truth: true, New: func(env *Env, _ int) picker.Picker {
		s := mustDefault()
		s.SetPrefixSource(truthSource{env})
		return s
	}}
}

// Precise is ours with the pool's KV-cache events on: the prefix each
// replica holds comes from its own cache (the events' index) instead of
// from where requests went; queue and batch still come from scrapes. The
// events' delivery (the control plane pushes the index every 20 ms) is
// left out, so this is precise matching at its best; the wall-clock
// benchmark's precise strategy runs the real event path.
func Precise() Strategy {
	return Strategy{Name: "precise", New: func(env *Env, _ int) picker.Picker {
		s := mustDefault()
		s.SetPrefixSource(truthSource{env})
		return s
	}}
}

func mustDefault() *picker.Scheduler {
	s, err := picker.FromProfile(nil)
	if err != nil {
		panic(err) // the default profile always builds
	}
	return s
}

// truthSource answers from the replicas' KV caches.
type truthSource struct{ env *Env }

func (t truthSource) CachedTokens(_ *picker.Request, cands []picker.Candidate, out []int) bool {
	for i, c := range cands {
		out[i] = -1
		if r := t.env.ReplicaOf(c.Endpoint.Address); r >= 0 {
			out[i] = t.env.CachedTokens(r)
		}
	}
	return true
}
