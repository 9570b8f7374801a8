package picker

import (
	"fmt"
	"strconv"
	"time"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Plugin names a PickerProfile may use (snapshot PluginRef.name). Users set
// a pool's profile with the InferencePool annotation infergate.dev/picker-profile
// (translate.PickerProfileAnnotation); a pool without one gets the
// control plane's translate.DefaultPickerProfile.
const (
	PluginQueue   = "queue"
	PluginRunning = "running"
	PluginKVCache = "kv-cache"
	PluginPrefix  = "prefix-cache"
	PluginLoRA    = "lora"
)

// Default weights: the reference picker's queue 2, KV 2, prefix 3, plus
// LoRA affinity 4, which is neutral (1 everywhere) for pools without
// adapters and for base-model requests, so it is on unless a profile names
// it with weight 0. It outweighs a queue difference of a few requests: an
// adapter load stalls a whole batch step and evicts another adapter,
// which costs its next request the same.
const defaultLoRAWeight = 4

// DefaultProfile is the profile of a pool that has none.
func DefaultProfile() *snapshotv1.PickerProfile {
	return &snapshotv1.PickerProfile{
		Scorers: []*snapshotv1.PluginRef{
			{Name: PluginQueue, Weight: 2},
			{Name: PluginKVCache, Weight: 2},
			{Name: PluginPrefix, Weight: 3},
		},
		ShedSheddable: true,
	}
}

// FromProfile builds the scheduler of a pool's profile (nil: DefaultProfile).
// Parameters per plugin:
//
//	queue, running  min-spread  (float, default 4): spread below which
//	                            differences do not use the full [0,1] range
//	prefix-cache    index-size  (int, default 65536) block hashes remembered
//	                affinity-blocks (int, default 32), load-factor (float, 1.25),
//	                slack (float, 8): affinity holds while the endpoint's
//	                queue ≤ load-factor × mean queue + slack;
//	                balance (float, 1.25; 0 off), min-homes (int, 3),
//	                window-seconds (float, 120): prefixes this proxy sent
//	                twice within the window are homed at most
//	                max(min-homes, ⌈balance × prefixes / endpoints⌉) per endpoint
//	lora            load-factor (float, 1.25), slack (float, 4): an adapter's
//	                home endpoints keep it while queue + running ≤
//	                load-factor × mean + slack; recent-seconds (float, 2):
//	                how long this proxy's own sends mark an adapter resident;
//	                max-homes (int, 2): endpoints an adapter is homed on at most
//
// Filters are not configurable yet: ejected endpoints are always filtered
// out. An unknown plugin name is an error, so a typo does not silently
// route without it.
func FromProfile(p *snapshotv1.PickerProfile) (*Scheduler, error) {
	if p == nil {
		p = DefaultProfile()
	}
	if len(p.GetFilters()) > 0 {
		return nil, fmt.Errorf("picker filters %q: no configurable filters exist", p.GetFilters()[0].GetName())
	}
	var ws []WeightedScorer
	hasLoRA := false
	for _, ref := range p.GetScorers() {
		sc, err := newScorer(ref)
		if err != nil {
			return nil, err
		}
		hasLoRA = hasLoRA || ref.GetName() == PluginLoRA
		ws = append(ws, WeightedScorer{Scorer: sc, Weight: ref.GetWeight()})
	}
	if !hasLoRA {
		ws = append(ws, WeightedScorer{Scorer: NewLoRAScorer(), Weight: defaultLoRAWeight})
	}
	return NewScheduler(ws, p.GetShedSheddable()), nil
}

func newScorer(ref *snapshotv1.PluginRef) (Scorer, error) {
	params := ref.GetParameters()
	// num reads a parameter ≥ 0 (def when absent); the first bad one is
	// the error returned with the scorer.
	var bad error
	num := func(key string, def float64) float64 {
		v, ok := params[key]
		if !ok {
			return def
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			if bad == nil {
				bad = fmt.Errorf("scorer %s: parameter %s=%q: want a number ≥ 0", ref.GetName(), key, v)
			}
			return def
		}
		return f
	}
	if ref.GetWeight() < 0 {
		return nil, fmt.Errorf("scorer %s: negative weight %v", ref.GetName(), ref.GetWeight())
	}
	switch ref.GetName() {
	case PluginQueue:
		return QueueScorer{MinSpread: num("min-spread", 4)}, bad
	case PluginRunning:
		return RunningScorer{MinSpread: num("min-spread", 4)}, bad
	case PluginKVCache:
		return KVCacheScorer{}, nil
	case PluginLoRA:
		l := NewLoRAScorer()
		l.LoadFactor, l.Slack = num("load-factor", l.LoadFactor), num("slack", l.Slack)
		l.Recent = time.Duration(num("recent-seconds", l.Recent.Seconds()) * float64(time.Second))
		l.MaxHomes = max(int(num("max-homes", float64(l.MaxHomes))), 1)
		return l, bad
	case PluginPrefix:
		p := NewPrefixScorer(int(num("index-size", DefaultPrefixIndexSize)))
		p.AffinityBlocks = max(int(num("affinity-blocks", float64(p.AffinityBlocks))), 1)
		p.LoadFactor, p.Slack = num("load-factor", p.LoadFactor), num("slack", p.Slack)
		p.Balance, p.MinHomes = num("balance", p.Balance), max(int(num("min-homes", float64(p.MinHomes))), 1)
		p.Window = time.Duration(num("window-seconds", p.Window.Seconds()) * float64(time.Second))
		return p, bad
	}
	return nil, fmt.Errorf("unknown scorer %q (want queue, running, kv-cache, prefix-cache or lora)", ref.GetName())
}
