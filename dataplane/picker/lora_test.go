package picker_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// loraFleet is n endpoints with maxLoRA slots each, running the given
// adapters round robin (endpoint i runs adapters i, i+n, …).
func loraFleet(n, maxLoRA int, adapters []string) []*endpoints.Endpoint {
	es := eps(n)
	for i, e := range es {
		var run []string
		for j := i; j < len(adapters); j += n {
			run = append(run, adapters[j])
		}
		fresh(e, endpoints.Metrics{MaxLoRA: maxLoRA, RunningAdapters: run, Running: 4})
	}
	return es
}

func adapterNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("adapter-%02d", i)
	}
	return out
}

// homes returns the endpoints that score 1 (an adapter's home set).
func homes(scores []float64, es []*endpoints.Endpoint) []string {
	var out []string
	for i, v := range scores {
		if v == 1 {
			out = append(out, es[i].Address)
		}
	}
	slices.Sort(out)
	return out
}

func TestLoRAScorerNeutralWithoutAdapters(t *testing.T) {
	es := eps(3)
	for _, e := range es {
		fresh(e, endpoints.Metrics{Running: 3})
	}
	// A pool without LoRA state: every model is neutral.
	if got := scoreOf(t, picker.NewLoRAScorer(), &picker.Request{Model: "a"}, es); fmt.Sprint(got) != "[1 1 1]" {
		t.Fatalf("no LoRA state: %v", got)
	}
	// A LoRA pool, but a model no endpoint reports and this proxy never
	// sent as an adapter (the base model).
	es = loraFleet(3, 2, []string{"a", "b"})
	if got := scoreOf(t, picker.NewLoRAScorer(), &picker.Request{Model: "base"}, es); fmt.Sprint(got) != "[1 1 1]" {
		t.Fatalf("base model: %v", got)
	}
}

// Homes: each adapter gets Σ max_lora / adapters endpoints, no endpoint
// is home to more adapters than it has slots, and two proxies with
// separate state (and candidates in another order) agree.
func TestLoRAScorerHomesBalancedAndAgreed(t *testing.T) {
	adapters := adapterNames(16)
	es := loraFleet(8, 4, adapters)
	p1, p2 := picker.NewLoRAScorer(), picker.NewLoRAScorer()
	shuffled := slices.Clone(es)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	perEndpoint := map[string]int{}
	for _, a := range adapters {
		req := &picker.Request{Model: a}
		h1 := homes(scoreOf(t, p1, req, es), es)
		h2 := homes(scoreOf(t, p2, req, shuffled), shuffled)
		if len(h1) != 2 {
			t.Errorf("%s: homes %v, want 2 (32 slots / 16 adapters)", a, h1)
		}
		if !slices.Equal(h1, h2) {
			t.Errorf("%s: proxies disagree: %v vs %v", a, h1, h2)
		}
		for _, h := range h1 {
			perEndpoint[h]++
		}
	}
	for _, e := range es {
		if n := perEndpoint[e.Address]; n != 4 {
			t.Errorf("%s is home to %d adapters, want 4 (its slots)", e.Address, n)
		}
	}
	// Fewer adapters than slots: MaxHomes homes each, and one overflow
	// endpoint (0.8) that is not a home.
	es = loraFleet(8, 4, adapters[:4])
	s := picker.NewLoRAScorer()
	s.MaxHomes = 3
	got := scoreOf(t, s, &picker.Request{Model: "adapter-00"}, es)
	if h := homes(got, es); len(h) != 3 {
		t.Errorf("4 adapters on 32 slots, MaxHomes 3: homes %v", h)
	}
	if n := slices.Index(got, 0.8); n < 0 || slices.Index(got[n+1:], 0.8) >= 0 {
		t.Errorf("want exactly one overflow endpoint: %v", got)
	}
	// More adapters than slots: one home each, spread evenly.
	many := adapterNames(40)
	es = loraFleet(8, 2, many)
	s = picker.NewLoRAScorer()
	perEndpoint = map[string]int{}
	for _, a := range many {
		h := picker.LoRAHomesForTest(s, a, es, time.Now())
		if len(h) != 1 {
			t.Fatalf("%s: homes %v, want 1", a, h)
		}
		perEndpoint[h[0]]++
	}
	for _, e := range es {
		if n := perEndpoint[e.Address]; n != 5 {
			t.Errorf("40 adapters on 8 endpoints: %s is home to %d, want 5", e.Address, n)
		}
	}
}

// Outside the home set: likely resident 0.7, free slot 0.5; slots all
// busy with other adapters 0, or 0.2 when the adapter waits there; a home
// over the load bound loses its 1.
func TestLoRAScorerFallbackRules(t *testing.T) {
	es := eps(5)
	fresh(es[0], endpoints.Metrics{MaxLoRA: 2, RunningAdapters: []string{"a"}, Running: 1})
	fresh(es[1], endpoints.Metrics{MaxLoRA: 2, RunningAdapters: []string{"b"}, Running: 1})
	fresh(es[2], endpoints.Metrics{MaxLoRA: 2, RunningAdapters: []string{"b", "c"}, WaitingAdapters: []string{"a"}, Running: 1})
	fresh(es[3], endpoints.Metrics{MaxLoRA: 2, RunningAdapters: []string{"b", "c"}, Running: 1})
	fresh(es[4], endpoints.Metrics{}) // no LoRA state
	s := picker.NewLoRAScorer()
	s.LoadFactor, s.Slack = 0, 0 // every home is over the bound
	got := scoreOf(t, s, &picker.Request{Model: "x", TargetModel: "a"}, es)
	if want := []float64{0.7, 0.5, 0.2, 0, 0.5}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v want %v", got, want)
	}
	// With room under the bound, the homes score 1.
	s = picker.NewLoRAScorer()
	got = scoreOf(t, s, &picker.Request{Model: "a"}, es)
	if n := len(homes(got, es)); n == 0 {
		t.Fatalf("no home within the bound: %v", got)
	}
	// A home whose slots all run other adapters would make the request
	// wait (possibly forever): it scores 0, under a free endpoint.
	// Whichever endpoint is a's home, the two running b and c score 0.
	es = loraFleet(3, 1, []string{"b", "a", "c"})
	got = scoreOf(t, picker.NewLoRAScorer(), &picker.Request{Model: "a"}, es)
	if got[0] != 0 || got[1] < 0.7 || got[2] != 0 {
		t.Fatalf("slots busy with other adapters: %v, want [0 ≥0.7 0]", got)
	}
	// A loaded home loses its affinity to an idle one.
	es = loraFleet(2, 1, []string{"a"})
	fresh(es[0], endpoints.Metrics{MaxLoRA: 1, RunningAdapters: []string{"a"}, Running: 30})
	fresh(es[1], endpoints.Metrics{MaxLoRA: 1, Running: 0})
	// One slot each, one adapter: one home, which the plan puts on one of them.
	got = scoreOf(t, picker.NewLoRAScorer(), &picker.Request{Model: "a"}, es)
	if got[0] == 1 {
		t.Fatalf("home over the bound (30 running vs mean 15 × 1.25 + 2) kept affinity: %v", got)
	}
}

// The proxy's own sends mark an adapter resident where scrapes show it
// idle (vLLM reports only running and waiting adapters), make a model it
// sent as an adapter count as one, and expire after Recent.
func TestLoRAScorerRemembersSends(t *testing.T) {
	now := time.Now()
	es := eps(4)
	for _, e := range es {
		fresh(e, endpoints.Metrics{MaxLoRA: 1, RunningAdapters: []string{"z"}, Running: 1})
	}
	fresh(es[0], endpoints.Metrics{MaxLoRA: 1, RunningAdapters: []string{"a"}, Running: 1})
	s := picker.NewLoRAScorer()
	s.LoadFactor, s.Slack = 0, 0 // no home affinity: look at memory only
	sched := picker.NewScheduler([]picker.WeightedScorer{{Scorer: s, Weight: 1}}, false)
	req := &picker.Request{Model: "a"}
	if ep, err := sched.Pick(req, es); err != nil || ep != es[0] {
		t.Fatalf("pick %v %v, want the endpoint running a", ep, err)
	}
	// a goes idle on es[0]: the scrape no longer shows it anywhere.
	fresh(es[0], endpoints.Metrics{MaxLoRA: 1, Running: 1})
	got := picker.ScoreForTest(s, req, es, now.Add(time.Second))
	if got[0] != 0.7 || got[1] != 0 {
		t.Fatalf("after a send: %v, want es[0] 0.7 (resident by own memory), full ones 0", got)
	}
	got = picker.ScoreForTest(s, req, es, now.Add(s.Recent+time.Second))
	if got[0] != 0.5 {
		t.Fatalf("after Recent: %v, want es[0] back to a free slot (0.5)", got)
	}
	// A model this proxy never sent as an adapter stays neutral.
	if got := picker.ScoreForTest(s, &picker.Request{Model: "base"}, es, now); fmt.Sprint(got) != "[1 1 1 1]" {
		t.Fatalf("base model: %v", got)
	}
}

func TestLoRAProfileParameters(t *testing.T) {
	ok := &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "lora", Weight: 3,
		Parameters: map[string]string{"load-factor": "1.5", "slack": "4", "recent-seconds": "0.5", "max-homes": "3"}}}}
	s, err := picker.FromProfile(ok)
	if err != nil {
		t.Fatal(err)
	}
	l := s.Scorers()[0].Scorer.(*picker.LoRAScorer)
	if l.LoadFactor != 1.5 || l.Slack != 4 || l.Recent != 500*time.Millisecond || l.MaxHomes != 3 {
		t.Fatalf("parameters not applied: %+v", l)
	}
	bad := &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "lora", Weight: 1,
		Parameters: map[string]string{"slack": "-1"}}}}
	if _, err := picker.FromProfile(bad); err == nil {
		t.Fatal("negative slack must be refused")
	}
}

// Exact packing (adapters × homes = slots) dead-ends for some adapter sets:
// the last adapter finds only its own home with a slot left. The plan then
// moves another adapter's home, so every endpoint still has exactly its
// slots' worth of homes.
func TestLoRAScorerExactPackingNeverOverfills(t *testing.T) {
	for set := range 30 {
		adapters := make([]string, 12)
		for i := range adapters {
			adapters[i] = fmt.Sprintf("set%d-adapter-%d", set, i)
		}
		es := loraFleet(6, 4, adapters)
		s := picker.NewLoRAScorer()
		perEndpoint := map[string]int{}
		for _, a := range adapters {
			for _, h := range homes(scoreOf(t, s, &picker.Request{Model: a}, es), es) {
				perEndpoint[h]++
			}
		}
		for _, e := range es {
			if n := perEndpoint[e.Address]; n != 4 {
				t.Fatalf("set %d: %s is home to %d adapters, want 4: %v", set, e.Address, n, perEndpoint)
			}
		}
	}
}
