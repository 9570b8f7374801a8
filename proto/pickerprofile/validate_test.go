package pickerprofile

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// TestTable checks the table is well formed: names unique, every default
// inside its domain, counts whole, and the default profile valid.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, pl := range Plugins() {
		if pl.Name == "" || seen[pl.Name] {
			t.Errorf("plugin name %q empty or repeated", pl.Name)
		}
		seen[pl.Name] = true
		if pl.DefaultWeight < 0 || pl.DefaultWeight > MaxWeight {
			t.Errorf("%s: default weight %v out of range", pl.Name, pl.DefaultWeight)
		}
		if pl.Implied && pl.DefaultWeight == 0 {
			t.Errorf("%s: implied with weight 0 would run as nothing", pl.Name)
		}
		params := map[string]bool{}
		for _, d := range pl.Params {
			if d.Name == "" || params[d.Name] {
				t.Errorf("%s: parameter name %q empty or repeated", pl.Name, d.Name)
			}
			params[d.Name] = true
			if d.Min > d.Max || d.Default < d.Min || d.Default > d.Max {
				t.Errorf("%s %s: default %v outside [%v, %v]", pl.Name, d.Name, d.Default, d.Min, d.Max)
			}
			if d.Kind == Count && (d.Default != math.Trunc(d.Default) || d.Min < 1) {
				t.Errorf("%s %s: a count's default and minimum must be whole and ≥ 1", pl.Name, d.Name)
			}
			if d.Doc == "" {
				t.Errorf("%s %s: no doc", pl.Name, d.Name)
			}
		}
	}
	if err := Validate(Default()); err != nil {
		t.Fatalf("default profile invalid: %v", err)
	}
	if !proto.Equal(Effective(Default()), Default()) {
		t.Errorf("the default profile does not name every implied plugin: %v", Effective(Default()))
	}
}

func TestValidate(t *testing.T) {
	ref := func(name string, w float64, kv ...string) *snapshotv1.PluginRef {
		r := &snapshotv1.PluginRef{Name: name, Weight: w}
		if len(kv) > 0 {
			r.Parameters = map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				r.Parameters[kv[i]] = kv[i+1]
			}
		}
		return r
	}
	prof := func(refs ...*snapshotv1.PluginRef) *snapshotv1.PickerProfile {
		return &snapshotv1.PickerProfile{Scorers: refs}
	}
	for _, tc := range []struct {
		name string
		p    *snapshotv1.PickerProfile
		want string // substring of the error; "" = valid
	}{
		{"nil", nil, ""},
		{"default", Default(), ""},
		{"all parameters", prof(ref(Queue, 2, "min-spread", "0"), ref(Prefix, 3, "index-size", "1024", "affinity-blocks", "16",
			"load-factor", "2", "slack", "4.5", "balance", "0", "min-homes", "2", "window-seconds", "30.5"),
			ref(LoRA, 0, "recent-seconds", "0", "max-homes", "4", "load-factor", "1", "slack", "0")), ""},
		{"no scorers", &snapshotv1.PickerProfile{ShedSheddable: true}, "no scorers"},
		{"unknown plugin", prof(ref("queu", 2)), `scorers[0]: unknown plugin "queu" (want one of cost, queue, running, kv-cache, prefix-cache, lora)`},
		{"repeated", prof(ref(Queue, 2), ref(KVCache, 1), ref(Queue, 1)), "scorers[2]: queue is already scorers[0]"},
		{"negative weight", prof(ref(Queue, -1)), "weight -1: want 0 to 1000"},
		{"NaN weight", prof(ref(Queue, math.NaN())), "weight NaN"},
		{"huge weight", prof(ref(Queue, 1e9)), "weight 1e+09"},
		{"unknown parameter", prof(ref(Prefix, 3, "slak", "4")), `scorers[0] (prefix-cache): parameter "slak": unknown (want one of index-size, affinity-blocks,`},
		{"no parameters", prof(ref(KVCache, 1, "x", "1")), "kv-cache takes no parameters"},
		{"not a number", prof(ref(Prefix, 3, "slack", "four")), `parameter slack="four": not a number: want a number from 0 to 1000000`},
		{"negative", prof(ref(Queue, 3, "min-spread", "-1")), "out of range"},
		{"infinite", prof(ref(Queue, 3, "min-spread", "Inf")), "not a number"},
		{"fraction count", prof(ref(Prefix, 3, "affinity-blocks", "2.5")), "not a whole number: want a whole number from 1 to 256"},
		{"zero count", prof(ref(LoRA, 3, "max-homes", "0")), "out of range"},
		{"too many blocks", prof(ref(Prefix, 3, "affinity-blocks", "257")), "out of range"},
		{"window too long", prof(ref(Prefix, 3, "window-seconds", "7200")), "want seconds from 1 to 3600"},
		{"filters", &snapshotv1.PickerProfile{Filters: []*snapshotv1.PluginRef{{Name: "x"}}, Scorers: []*snapshotv1.PluginRef{ref(Queue, 1)}},
			"no configurable filters"},
		{"queue ok", &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{ref(Queue, 1)}, Queue: &snapshotv1.WaitQueue{}}, ""},
		{"queue ttl", &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{ref(Queue, 1)},
			Queue: &snapshotv1.WaitQueue{Ttl: durationpb.New(-time.Second)}}, "queue ttl -1s: want > 0 and ≤ 1h0m0s"},
		{"queue requests", &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{ref(Queue, 1)},
			Queue: &snapshotv1.WaitQueue{MaxRequests: MaxQueueRequests + 1}}, "queue maxRequests"},
		{"queue bytes", &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{ref(Queue, 1)},
			Queue: &snapshotv1.WaitQueue{MaxBytes: math.MaxUint64}}, "queue maxBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.p)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParamsDefaultsAndValues(t *testing.T) {
	v, err := Params(&snapshotv1.PluginRef{Name: Prefix, Parameters: map[string]string{"slack": " 4 ", "window-seconds": "1.5"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Number("slack"); got != 4 {
		t.Errorf("slack = %v, want 4", got)
	}
	if got := v.Count("affinity-blocks"); got != 32 {
		t.Errorf("affinity-blocks = %v, want the default 32", got)
	}
	if got := v.Seconds("window-seconds"); got != 1500*time.Millisecond {
		t.Errorf("window = %v, want 1.5s", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("reading a parameter the table lacks did not panic")
		}
	}()
	v.Number("nope")
}

func TestEffective(t *testing.T) {
	p := &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: Queue, Weight: 1}}, ShedSheddable: true}
	e := Effective(p)
	if len(p.Scorers) != 1 {
		t.Fatalf("Effective modified its argument: %v", p)
	}
	if len(e.Scorers) != 2 || e.Scorers[1].GetName() != LoRA || e.Scorers[1].GetWeight() != 4 || !e.ShedSheddable {
		t.Errorf("Effective = %v, want queue 1 + lora 4, shedding", e)
	}
	off := &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: Queue, Weight: 1}, {Name: LoRA}}}
	if Effective(off) != off {
		t.Errorf("a profile naming lora (weight 0: off) got it again")
	}
	if !proto.Equal(Effective(nil), Default()) {
		t.Errorf("Effective(nil) = %v, want the default", Effective(nil))
	}
}

// FuzzValidate: any profile either validates or gets an error, never a
// panic, and a valid one builds every plugin's values.
func FuzzValidate(f *testing.F) {
	f.Add("prefix-cache", 3.0, "slack", "4")
	f.Add("lora", 0.0, "max-homes", "2.5")
	f.Add("queue", -1.0, "min-spread", "NaN")
	f.Add("kv-cache", 1.0, "", "")
	f.Fuzz(func(t *testing.T, name string, w float64, k, v string) {
		ref := &snapshotv1.PluginRef{Name: name, Weight: w}
		if k != "" {
			ref.Parameters = map[string]string{k: v}
		}
		p := &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{ref}}
		if err := Validate(p); err != nil {
			return
		}
		vals, err := Params(ref)
		if err != nil {
			t.Fatalf("valid profile, but Params: %v", err)
		}
		for _, d := range vals.Plugin().Params {
			if x := vals.Number(d.Name); x < d.Min || x > d.Max {
				t.Fatalf("%s = %v outside [%v, %v]", d.Name, x, d.Min, d.Max)
			}
		}
	})
}
