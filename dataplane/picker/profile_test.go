package picker_test

import (
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/proto/pickerprofile"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// TestEveryContractPluginBuilds: every plugin of the profile contract builds
// a scorer, so a profile the control plane accepts is one the proxy runs.
func TestEveryContractPluginBuilds(t *testing.T) {
	for _, pl := range pickerprofile.Plugins() {
		p := &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: pl.Name, Weight: 1}}}
		if _, err := picker.FromProfile(p); err != nil {
			t.Errorf("%s: %v", pl.Name, err)
		}
	}
}

// TestConstructorDefaultsMatchContract: scorers built directly (benchmarks,
// tests) start from the contract's defaults, as profile-built ones do.
func TestConstructorDefaultsMatchContract(t *testing.T) {
	def := func(plugin, param string) float64 {
		pl, _ := pickerprofile.Lookup(plugin)
		d, ok := pl.Param(param)
		if !ok {
			t.Fatalf("%s has no parameter %s", plugin, param)
		}
		return d.Default
	}
	secs := func(d time.Duration) float64 { return d.Seconds() }
	l := picker.NewLoRAScorer()
	p := picker.NewPrefixScorer(0)
	for _, c := range []struct {
		plugin, param string
		got           float64
	}{
		{pickerprofile.LoRA, "load-factor", l.LoadFactor},
		{pickerprofile.LoRA, "slack", l.Slack},
		{pickerprofile.LoRA, "recent-seconds", secs(l.Recent)},
		{pickerprofile.LoRA, "max-homes", float64(l.MaxHomes)},
		{pickerprofile.Prefix, "index-size", picker.DefaultPrefixIndexSize},
		{pickerprofile.Prefix, "affinity-blocks", float64(p.AffinityBlocks)},
		{pickerprofile.Prefix, "load-factor", p.LoadFactor},
		{pickerprofile.Prefix, "slack", p.Slack},
		{pickerprofile.Prefix, "balance", p.Balance},
		{pickerprofile.Prefix, "min-homes", float64(p.MinHomes)},
		{pickerprofile.Prefix, "window-seconds", secs(p.Window)},
	} {
		if want := def(c.plugin, c.param); c.got != want {
			t.Errorf("%s %s: constructor default %v, contract %v", c.plugin, c.param, c.got, want)
		}
	}
}
