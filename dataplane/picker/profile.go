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
//	                twice within the window (with several proxies also once,
//	                while at most 4 per endpoint) are homed at most
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
	if ref.GetWeight() < 0 {
		return nil, fmt.Errorf("scorer %s: negative weight %v", ref.GetName(), ref.GetWeight())
	}
	ps := params{ref: ref}
	switch ref.GetName() {
	case PluginQueue:
		return QueueScorer{MinSpread: ps.num("min-spread", 4)}, ps.bad
	case PluginRunning:
		return RunningScorer{MinSpread: ps.num("min-spread", 4)}, ps.bad
	case PluginKVCache:
		return KVCacheScorer{}, nil
	case PluginLoRA:
		l := NewLoRAScorer()
		l.LoadFactor, l.Slack = ps.num("load-factor", l.LoadFactor), ps.num("slack", l.Slack)
		l.Recent = ps.seconds("recent-seconds", l.Recent)
		l.MaxHomes = ps.count("max-homes", l.MaxHomes)
		return l, ps.bad
	case PluginPrefix:
		p := NewPrefixScorer(int(ps.num("index-size", DefaultPrefixIndexSize)))
		p.AffinityBlocks = ps.count("affinity-blocks", p.AffinityBlocks)
		p.LoadFactor, p.Slack = ps.num("load-factor", p.LoadFactor), ps.num("slack", p.Slack)
		p.Balance, p.MinHomes = ps.num("balance", p.Balance), ps.count("min-homes", p.MinHomes)
		p.Window = ps.seconds("window-seconds", p.Window)
		return p, ps.bad
	}
	return nil, fmt.Errorf("unknown scorer %q (want queue, running, kv-cache, prefix-cache or lora)", ref.GetName())
}

// params reads a plugin's parameters, each a number ≥ 0 or absent (the
// default); bad is the first bad one, returned with the scorer.
type params struct {
	ref *snapshotv1.PluginRef
	bad error
}

func (p *params) num(key string, def float64) float64 {
	v, ok := p.ref.GetParameters()[key]
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		if p.bad == nil {
			p.bad = fmt.Errorf("scorer %s: parameter %s=%q: want a number ≥ 0", p.ref.GetName(), key, v)
		}
		return def
	}
	return f
}

// count reads a whole number, at least 1 (fractions are cut).
func (p *params) count(key string, def int) int { return max(int(p.num(key, float64(def))), 1) }

// seconds reads a duration given in (fractional) seconds.
func (p *params) seconds(key string, def time.Duration) time.Duration {
	return time.Duration(p.num(key, def.Seconds()) * float64(time.Second))
}
