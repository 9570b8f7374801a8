package pickerprofile

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Default is the profile of a pool that sets none: the plugin marked Alone
// that has a DefaultWeight (the cost model) if there is one, else every
// plugin with a DefaultWeight, in table order; and shedding of sheddable
// requests when the pool is saturated. It names implied plugins too, so a
// snapshot shows what runs.
func Default() *snapshotv1.PickerProfile {
	p := &snapshotv1.PickerProfile{ShedSheddable: true}
	for _, pl := range plugins {
		if pl.DefaultWeight > 0 && pl.Alone {
			// A plugin that replaces the weighted scorers is the whole
			// default.
			p.Scorers = []*snapshotv1.PluginRef{{Name: pl.Name, Weight: pl.DefaultWeight}}
			return p
		}
	}
	for _, pl := range plugins {
		if pl.DefaultWeight > 0 {
			p.Scorers = append(p.Scorers, &snapshotv1.PluginRef{Name: pl.Name, Weight: pl.DefaultWeight})
		}
	}
	return p
}

// Validate checks a profile completely: known plugins, each at most once
// and with a weight in [0, MaxWeight], a plugin marked Alone on its own,
// known parameters with values in their domains, no filters (none are
// configurable), and the wait queue's bounds. nil is valid (Default). The
// error names the offending scorer and parameter and what is allowed.
func Validate(p *snapshotv1.PickerProfile) error {
	if p == nil {
		return nil
	}
	if fs := p.GetFilters(); len(fs) > 0 {
		return fmt.Errorf("filters: %q: no configurable filters exist (ejected endpoints are always filtered out)", fs[0].GetName())
	}
	refs := p.GetScorers()
	if len(refs) == 0 {
		return fmt.Errorf("no scorers: name at least one of %s", strings.Join(Names(), ", "))
	}
	for i, ref := range refs {
		pl, ok := Lookup(ref.GetName())
		if !ok {
			return fmt.Errorf("scorers[%d]: unknown plugin %q (want one of %s)", i, ref.GetName(), strings.Join(Names(), ", "))
		}
		if pl.Alone && len(refs) > 1 {
			return fmt.Errorf("scorers[%d]: %s replaces the weighted scorers: it cannot be combined with others", i, pl.Name)
		}
		if j := slices.IndexFunc(refs[:i], func(r *snapshotv1.PluginRef) bool { return r.GetName() == pl.Name }); j >= 0 {
			return fmt.Errorf("scorers[%d]: %s is already scorers[%d]", i, pl.Name, j)
		}
		if w := ref.GetWeight(); !(w >= 0 && w <= MaxWeight) { // NaN fails too
			return fmt.Errorf("scorers[%d] (%s): weight %v: want 0 to %d", i, pl.Name, w, MaxWeight)
		}
		if _, err := Params(ref); err != nil {
			return fmt.Errorf("scorers[%d] (%s): %w", i, pl.Name, err)
		}
	}
	if _, _, err := QueueOf(p.GetQueue()); err != nil {
		return err
	}
	return nil
}

// Effective returns the profile the proxy runs for p: Default for nil, else
// p with every implied plugin it does not name appended at its default
// weight (none when p names a plugin that runs alone). p is not modified.
func Effective(p *snapshotv1.PickerProfile) *snapshotv1.PickerProfile {
	if p == nil {
		return Default()
	}
	named := func(name string) bool {
		return slices.ContainsFunc(p.GetScorers(), func(r *snapshotv1.PluginRef) bool { return r.GetName() == name })
	}
	var add []*snapshotv1.PluginRef
	for _, pl := range plugins {
		if pl.Alone && named(pl.Name) {
			return p
		}
		if pl.Implied && !named(pl.Name) {
			add = append(add, &snapshotv1.PluginRef{Name: pl.Name, Weight: pl.DefaultWeight})
		}
	}
	if len(add) == 0 {
		return p
	}
	return &snapshotv1.PickerProfile{Filters: p.GetFilters(), ShedSheddable: p.GetShedSheddable(), Queue: p.GetQueue(),
		KvEvents: p.GetKvEvents(), Scorers: append(slices.Clip(p.GetScorers()), add...)}
}

// Values are a plugin's parameters with defaults filled in.
type Values struct {
	plugin *Plugin
	vals   []float64 // by index of plugin.Params
}

// Params reads ref's parameters against the table: an unknown plugin or
// parameter, or a value outside its domain, is an error.
func Params(ref *snapshotv1.PluginRef) (Values, error) {
	pl, ok := Lookup(ref.GetName())
	if !ok {
		return Values{}, fmt.Errorf("unknown plugin %q (want one of %s)", ref.GetName(), strings.Join(Names(), ", "))
	}
	v := Values{plugin: pl, vals: make([]float64, len(pl.Params))}
	for i, d := range pl.Params {
		v.vals[i] = d.Default
	}
	// Sorted, so the first error is the same on every run (maps are not).
	keys := make([]string, 0, len(ref.GetParameters()))
	for k := range ref.GetParameters() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		i := slices.IndexFunc(pl.Params, func(d Param) bool { return d.Name == k })
		if i < 0 {
			if len(pl.Params) == 0 {
				return Values{}, fmt.Errorf("parameter %q: %s takes no parameters", k, pl.Name)
			}
			names := make([]string, len(pl.Params))
			for j, d := range pl.Params {
				names[j] = d.Name
			}
			return Values{}, fmt.Errorf("parameter %q: unknown (want one of %s)", k, strings.Join(names, ", "))
		}
		f, err := pl.Params[i].parse(ref.GetParameters()[k])
		if err != nil {
			return Values{}, fmt.Errorf("parameter %s=%q: %w", k, ref.GetParameters()[k], err)
		}
		v.vals[i] = f
	}
	return v, nil
}

// parse checks s against d's domain.
func (d *Param) parse(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	want := fmt.Sprintf("want %s from %s to %s", d.Kind, fmtNum(d.Min), fmtNum(d.Max))
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		return 0, fmt.Errorf("not a number: %s", want)
	case d.Kind == Count && f != math.Trunc(f):
		return 0, fmt.Errorf("not a whole number: %s", want)
	case f < d.Min || f > d.Max:
		return 0, fmt.Errorf("out of range: %s", want)
	}
	return f, nil
}

// fmtNum writes f as people do: 4194304, 1.25 (not 4.194304e+06).
func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Plugin returns the plugin the values belong to.
func (v Values) Plugin() *Plugin { return v.plugin }

// Number returns parameter name. Naming a parameter the plugin's table
// entry lacks is a bug in the caller, so it panics.
func (v Values) Number(name string) float64 {
	i := slices.IndexFunc(v.plugin.Params, func(d Param) bool { return d.Name == name })
	if i < 0 {
		panic(fmt.Sprintf("pickerprofile: plugin %s has no parameter %q", v.plugin.Name, name))
	}
	return v.vals[i]
}

// Count returns parameter name as an int.
func (v Values) Count(name string) int { return int(v.Number(name)) }

// Seconds returns parameter name as a duration.
func (v Values) Seconds(name string) time.Duration {
	return time.Duration(v.Number(name) * float64(time.Second))
}
