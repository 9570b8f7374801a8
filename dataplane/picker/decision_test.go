package picker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

// The decision hook sees exactly the picks its Want accepts, with the
// request they belong to and the endpoint Pick returned; the Decision
// names every candidate with its terms. Turned off, nothing is asked.
func TestDecisionHook(t *testing.T) {
	f := newCostFleet(t, 3)
	var asked int
	var got []*picker.Decision
	var gotReq []*picker.Request
	f.s.SetDecisionHook(&picker.DecisionHook{
		Want: func(req *picker.Request) bool { asked++; return req.Model == "wanted" },
		Record: func(req *picker.Request, d *picker.Decision) {
			got, gotReq = append(got, d), append(gotReq, req)
		},
	})
	body := chatBody(longSystem, "q")
	unwanted := &picker.Request{Model: "m", Body: body}
	if _, err := f.s.Pick(unwanted, f.es); err != nil {
		t.Fatal(err)
	}
	wanted := &picker.Request{Model: "wanted", Body: body, MaxTokens: 7}
	ep, err := f.s.Pick(wanted, f.es)
	if err != nil {
		t.Fatal(err)
	}
	if asked != 2 || len(got) != 1 || gotReq[0] != wanted {
		t.Fatalf("asked %d times, %d decisions (want 2 and 1, for the wanted request)", asked, len(got))
	}
	d := got[0]
	if d.Chosen != ep.Address || d.Model != "wanted" || d.OutputTokens != 7 || d.PromptTokens <= 0 || len(d.Candidates) != 3 {
		t.Fatalf("decision %+v, picked %s", d, ep.Address)
	}
	for _, c := range d.Candidates {
		if c.Cost <= 0 || c.Prefill <= 0 || c.Decode <= 0 {
			t.Errorf("candidate %s terms %+v", c.Endpoint, c.Terms)
		}
	}

	f.s.SetDecisionHook(nil)
	if _, err := f.s.Pick(wanted, f.es); err != nil {
		t.Fatal(err)
	}
	f.s.SetDecisionHook(&picker.DecisionHook{Want: func(*picker.Request) bool { return true }}) // no Record: off
	if _, err := f.s.Pick(wanted, f.es); err != nil {
		t.Fatal(err)
	}
	if asked != 2 || len(got) != 1 {
		t.Fatalf("hook off: asked %d, %d decisions", asked, len(got))
	}
}

// BenchmarkPick64Hooked is BenchmarkPick64 with a decision hook that
// wants no pick (a paced ring between its slots, untraced requests): the
// pick must stay allocation-free. BenchmarkPick64Explained explains every
// pick, the cost of a decision.
func BenchmarkPick64Hooked(b *testing.B)    { benchPickHooked(b, false) }
func BenchmarkPick64Explained(b *testing.B) { benchPickHooked(b, true) }

func benchPickHooked(b *testing.B, want bool) {
	es := eps(64)
	now := time.Now()
	for i, e := range es {
		e.SetMetrics(&endpoints.Metrics{Waiting: float64(i % 7), Running: float64(i % 5), KVCacheUsage: float64(i%10) / 10,
			At: now.Add(time.Hour)})
	}
	reqs := make([]*picker.Request, 32)
	for i := range reqs {
		sys := fmt.Sprintf("group %d: ", i) + strings.Repeat("you are a helpful assistant. ", 600)
		reqs[i] = &picker.Request{Model: "m", Body: chatBody(sys, "question")}
	}
	sched, err := picker.FromProfile(nil)
	if err != nil {
		b.Fatal(err)
	}
	var n int
	sched.SetDecisionHook(&picker.DecisionHook{
		Want:   func(*picker.Request) bool { return want },
		Record: func(_ *picker.Request, d *picker.Decision) { n += len(d.Candidates) },
	})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := sched.Pick(reqs[i%len(reqs)], es); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if want && n == 0 {
		b.Fatal("no decision recorded")
	}
}
