package picker

import (
	"fmt"

	"github.com/infergate/infergate/proto/pickerprofile"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Plugin names a PickerProfile may use (snapshot PluginRef.name). Users set
// a pool's profile with the InferencePool annotation infergate.dev/picker-profile
// (translate.PickerProfileAnnotation). The contract — names, parameters with
// their domains and defaults, the default profile — is proto/pickerprofile,
// which the control plane validates with too; adding a plugin is an entry
// there and a case in newScorer.
const (
	PluginQueue   = pickerprofile.Queue
	PluginRunning = pickerprofile.Running
	PluginKVCache = pickerprofile.KVCache
	PluginPrefix  = pickerprofile.Prefix
	PluginLoRA    = pickerprofile.LoRA
	// PluginCost is the cost model (CostModel): alone in a profile, it
	// replaces the weighted scorers.
	PluginCost = pickerprofile.Cost
)

// DefaultProfile is the profile of a pool that has none
// (pickerprofile.Default: queue 2, KV 2, prefix 3, LoRA 4, shedding).
func DefaultProfile() *snapshotv1.PickerProfile { return pickerprofile.Default() }

// FromProfile builds the scheduler of a pool's profile (nil: DefaultProfile).
// The profile must pass pickerprofile.Validate (unknown plugins or
// parameters, and values outside their domains, are errors, so a typo does
// not silently route without it); implied plugins (LoRA affinity) run unless
// the profile names them (pickerprofile.Effective). Parameters are read with
// the table's defaults; see pickerprofile's plugins table for each one's
// meaning and domain.
func FromProfile(p *snapshotv1.PickerProfile) (*Scheduler, error) {
	if err := pickerprofile.Validate(p); err != nil {
		return nil, err
	}
	p = pickerprofile.Effective(p)
	if refs := p.GetScorers(); len(refs) == 1 && refs[0].GetName() == PluginCost {
		v, err := pickerprofile.Params(refs[0])
		if err != nil {
			return nil, err // Validate checked it: unreachable
		}
		return NewCostScheduler(newCostModel(v), p.GetShedSheddable()), nil
	}
	ws := make([]WeightedScorer, 0, len(p.GetScorers()))
	for _, ref := range p.GetScorers() {
		v, err := pickerprofile.Params(ref)
		if err != nil {
			return nil, err // Validate checked it: unreachable
		}
		sc, err := newScorer(v)
		if err != nil {
			return nil, err
		}
		ws = append(ws, WeightedScorer{Scorer: sc, Weight: ref.GetWeight()})
	}
	return NewScheduler(ws, p.GetShedSheddable()), nil
}

// newScorer builds the scorer of one validated plugin reference.
func newScorer(v pickerprofile.Values) (Scorer, error) {
	switch name := v.Plugin().Name; name {
	case PluginQueue:
		return QueueScorer{MinSpread: v.Number("min-spread")}, nil
	case PluginRunning:
		return RunningScorer{MinSpread: v.Number("min-spread")}, nil
	case PluginKVCache:
		return KVCacheScorer{}, nil
	case PluginLoRA:
		l := NewLoRAScorer()
		l.LoadFactor, l.Slack = v.Number("load-factor"), v.Number("slack")
		l.Recent = v.Seconds("recent-seconds")
		l.MaxHomes = v.Count("max-homes")
		return l, nil
	case PluginPrefix:
		p := NewPrefixScorer(v.Count("index-size"))
		p.AffinityBlocks = v.Count("affinity-blocks")
		p.LoadFactor, p.Slack = v.Number("load-factor"), v.Number("slack")
		p.Balance, p.MinHomes = v.Number("balance"), v.Count("min-homes")
		p.Window = v.Seconds("window-seconds")
		return p, nil
	case PluginCost:
		return nil, fmt.Errorf("plugin %s replaces the weighted scorers: it cannot be combined with others", name)
	default:
		// A table entry without a case here: TestEveryContractPluginBuilds
		// catches it.
		return nil, fmt.Errorf("plugin %q is in the profile contract but not built by the picker", name)
	}
}
