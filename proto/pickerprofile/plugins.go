// Package pickerprofile is the contract of a pool's picker profile (the
// snapshot's PickerProfile) that the control plane and the proxy share: the
// plugins a profile may name, every parameter with its domain and default,
// the default profile, the wait queue's bounds, and one Validate both planes
// run. The control plane validates each pool's profile with it and reports a
// bad one on that pool's status, sending the default instead, so a proxy
// never receives a profile it would refuse; the proxy builds its schedulers
// from the same table (Params fills in the defaults), so the two cannot
// drift.
//
// Adding a plugin or a parameter is one entry in the plugins table below,
// plus the proxy code that reads it (dataplane/picker, profile.go).
package pickerprofile

import "time"

// Plugin names.
const (
	Queue   = "queue"
	Running = "running"
	KVCache = "kv-cache"
	Prefix  = "prefix-cache"
	LoRA    = "lora"
	Cost    = "cost"
)

// Kind is the domain of a parameter's value. Values travel as strings (the
// snapshot's PluginRef.parameters); each kind says which strings are valid.
type Kind int

const (
	// Number is a finite decimal number.
	Number Kind = iota
	// Count is a whole number.
	Count
	// Seconds is a duration in (fractional) seconds.
	Seconds
)

func (k Kind) String() string {
	switch k {
	case Count:
		return "a whole number"
	case Seconds:
		return "seconds"
	}
	return "a number"
}

// Param is one parameter of a plugin: its value must be of Kind and lie in
// [Min, Max]; absent, it is Default.
type Param struct {
	Name     string
	Kind     Kind
	Default  float64
	Min, Max float64
	// Doc says what the parameter does, for docs and error messages.
	Doc string
}

// Plugin is one scorer a profile may name.
type Plugin struct {
	Name string
	Doc  string
	// DefaultWeight is the plugin's weight in the default profile (0: not
	// in it).
	DefaultWeight float64
	// Implied plugins run in every weighted profile that does not name
	// them, at DefaultWeight (a profile names one with weight 0 to turn it
	// off).
	Implied bool
	// Alone marks a plugin that replaces the weighted scorers: a profile
	// naming it names nothing else.
	Alone  bool
	Params []Param
}

// MaxWeight bounds a scorer's weight: weights only compare with each other,
// so larger ones only lose precision.
const MaxWeight = 1000

// plugins is the table of every plugin, in the order docs list them. It is
// never modified.
var plugins = []Plugin{
	{
		Name: Cost, Alone: true, DefaultWeight: 1,
		Doc: "cost model (the default): picks the endpoint where the request's estimated wait, prefill of its uncached prompt and decode, plus a share of the delay it adds to the requests there, is least; prefix affinity is a term of that cost",
		Params: []Param{
			{Name: "prefill-ms-per-1k-tokens", Kind: Number, Default: 250, Min: 0.1, Max: 1e5,
				Doc: "prefill time per 1,000 uncached prompt tokens (default: an 8B model on one H100-class GPU)"},
			{Name: "step-ms", Kind: Number, Default: 11, Min: 0.01, Max: 1e5,
				Doc: "decode step time of an empty batch"},
			{Name: "step-ms-per-sequence", Kind: Number, Default: 0.45, Min: 0, Max: 1e4,
				Doc: "decode step time each running sequence adds"},
			{Name: "step-ms-per-1k-context", Kind: Number, Default: 0.4, Min: 0, Max: 1e4,
				Doc: "decode step time each 1,000 tokens of the request's context add"},
			{Name: "output-tokens", Kind: Number, Default: 256, Min: 1, Max: 1 << 20,
				Doc: "expected output of a request without max_tokens, until responses' usage teaches the pool's own"},
			{Name: "harm-weight", Kind: Number, Default: 0.25, Min: 0, Max: 100,
				Doc: "share of the delay a request adds to the requests already on an endpoint that counts against sending it there"},
			{Name: "tie-tolerance", Kind: Number, Default: 0.02, Min: 0, Max: 1,
				Doc: "costs within this fraction of the cheapest count as equal; the prompt's rendezvous order picks among them, the same on every proxy"},
			{Name: "index-size", Kind: Count, Default: 128 << 10, Min: 1, Max: 1 << 22,
				Doc: "prompt prefix keys this proxy remembers (about 18 per 4k-token prompt)"},
			{Name: "affinity-blocks", Kind: Count, Default: 32, Min: 1, Max: 4096,
				Doc: "leading 64-character blocks that identify a prefix for the home plan"},
			{Name: "balance", Kind: Number, Default: 1.25, Min: 0, Max: 100,
				Doc: "an endpoint homes at most max(min-homes, ⌈balance × homes / endpoints⌉) hot prefixes; 0 turns the plan off"},
			{Name: "min-homes", Kind: Count, Default: 3, Min: 1, Max: 1 << 16,
				Doc: "see balance"},
			{Name: "window-seconds", Kind: Seconds, Default: 120, Min: 1, Max: 3600,
				Doc: "a prefix sent twice within the window is hot; its share of the window's traffic sizes its home set"},
		},
	},
	{
		Name: Queue,
		Doc:  "prefers endpoints with fewer waiting requests (scraped queue plus this proxy's own still-open requests), min-max normalised",
		Params: []Param{
			{Name: "min-spread", Kind: Number, Default: 4, Min: 0, Max: 1e6,
				Doc: "queue spread below which differences do not use the whole [0,1] range"},
		},
	},
	{
		Name: Running,
		Doc:  "prefers endpoints with fewer running requests, min-max normalised",
		Params: []Param{
			{Name: "min-spread", Kind: Number, Default: 4, Min: 0, Max: 1e6,
				Doc: "spread below which differences do not use the whole [0,1] range"},
		},
	},
	{
		Name: KVCache,
		Doc:  "prefers endpoints with more free KV cache (1 − use)",
	},
	{
		Name: Prefix,
		Doc:  "prefix-cache affinity: a prompt's leading blocks go to the same endpoint on every proxy, bounded by load",
		Params: []Param{
			{Name: "index-size", Kind: Count, Default: 64 << 10, Min: 1, Max: 1 << 22,
				Doc: "block hashes this proxy remembers"},
			{Name: "affinity-blocks", Kind: Count, Default: 32, Min: 1, Max: 256,
				Doc: "leading 64-character blocks that rank the endpoints"},
			{Name: "load-factor", Kind: Number, Default: 1.25, Min: 0, Max: 100,
				Doc: "affinity holds while the endpoint's queue ≤ load-factor × mean queue + slack"},
			{Name: "slack", Kind: Number, Default: 8, Min: 0, Max: 1e6,
				Doc: "see load-factor"},
			{Name: "balance", Kind: Number, Default: 1.25, Min: 0, Max: 100,
				Doc: "hot prefixes are homed at most max(min-homes, ⌈balance × prefixes / endpoints⌉) per endpoint; 0 turns the plan off"},
			{Name: "min-homes", Kind: Count, Default: 3, Min: 1, Max: 1 << 16,
				Doc: "see balance"},
			{Name: "window-seconds", Kind: Seconds, Default: 120, Min: 1, Max: 3600,
				Doc: "a prefix sent twice within the window is hot"},
		},
	},
	{
		Name: LoRA, DefaultWeight: 4, Implied: true,
		// Neutral (1 everywhere) for pools without adapters and for
		// base-model requests. 4 outweighs a queue difference of a few
		// requests: an adapter load stalls a whole batch step and evicts
		// another adapter, which costs its next request the same.
		Doc: "LoRA affinity: 1.0 adapter active, 0.8 free slot, 0.6 waiting, 0 otherwise; adapters keep home endpoints",
		Params: []Param{
			{Name: "load-factor", Kind: Number, Default: 1.25, Min: 0, Max: 100,
				Doc: "an adapter's homes keep it while queue + running ≤ load-factor × mean + slack"},
			{Name: "slack", Kind: Number, Default: 4, Min: 0, Max: 1e6,
				Doc: "see load-factor"},
			{Name: "recent-seconds", Kind: Seconds, Default: 2, Min: 0, Max: 3600,
				Doc: "how long this proxy's own sends mark an adapter resident"},
			{Name: "max-homes", Kind: Count, Default: 2, Min: 1, Max: 1 << 16,
				Doc: "endpoints an adapter is homed on at most"},
		},
	},
}

// Plugins returns every plugin, in table order. The slice is a copy; the
// Params slices are shared and must not be modified.
func Plugins() []Plugin {
	out := make([]Plugin, len(plugins))
	copy(out, plugins)
	return out
}

// Lookup returns the plugin named name.
func Lookup(name string) (*Plugin, bool) {
	for i := range plugins {
		if plugins[i].Name == name {
			return &plugins[i], true
		}
	}
	return nil, false
}

// Names returns the plugin names in table order.
func Names() []string {
	out := make([]string, len(plugins))
	for i, p := range plugins {
		out[i] = p.Name
	}
	return out
}

// Param returns the plugin's parameter named name.
func (p *Plugin) Param(name string) (*Param, bool) {
	for i := range p.Params {
		if p.Params[i].Name == name {
			return &p.Params[i], true
		}
	}
	return nil, false
}

// DefaultDuration is d's default as a duration (for Seconds parameters).
func (d *Param) DefaultDuration() time.Duration {
	return time.Duration(d.Default * float64(time.Second))
}
