package pipeline

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/dataplane/upstream"
)

// The ring keeps a pool's last DecisionRingSize decisions, newest first;
// a traced request's decision reaches its slot whether or not the ring's
// period allows keeping it; a dropped pool's ring goes with it.
func TestDecisionRing(t *testing.T) {
	m := &Pipeline{decisions: newDecisions()}
	h := m.decisions.hookFor("gw/pool", "ns/pool")
	if h2 := m.decisions.hookFor("gw/pool", "ns/pool"); h2 != h {
		t.Fatal("a second hook for the same pool")
	}
	ring := m.decisions.pools["gw/pool"]
	const n = DecisionRingSize + 10
	for i := range n {
		ring.last.Store(0) // as if DecisionEvery had passed
		req := &picker.Request{Header: http.Header{upstream.RequestIDHeader: {fmt.Sprint(i)}}}
		if !h.Want(req) {
			t.Fatalf("pick %d not wanted after the period", i)
		}
		h.Record(req, &picker.Decision{Chosen: fmt.Sprint(i)})
	}
	ds := m.Decisions("", 0)
	if len(ds) != DecisionRingSize {
		t.Fatalf("%d decisions kept, want %d", len(ds), DecisionRingSize)
	}
	for i, d := range ds {
		if want := fmt.Sprint(n - 1 - i); d.RequestID != want || d.Chosen != want || d.Pool != "ns/pool" {
			t.Fatalf("decision %d: %+v, want request %s", i, d, want)
		}
	}

	// Within the period only a traced request is wanted, and its decision
	// goes to its slot, not the ring.
	untraced, traced := &picker.Request{}, &picker.Request{}
	if h.Want(untraced) || h.Want(traced) {
		t.Fatal("wanted within the period")
	}
	slot := m.decisions.watch(traced)
	if h.Want(untraced) || !h.Want(traced) {
		t.Fatal("traced request not wanted, or an untraced one wanted")
	}
	d := &picker.Decision{Chosen: "traced"}
	h.Record(traced, d)
	m.decisions.unwatch(traced)
	if slot.decision() != d || m.Decisions("ns/pool", 1)[0].Chosen == "traced" {
		t.Fatalf("traced decision: slot %+v, ring %+v", slot.decision(), m.Decisions("", 1))
	}
	if h.Want(traced) {
		t.Fatal("still wanted after unwatch")
	}

	m.decisions.retain(func(string) bool { return false })
	if ds := m.Decisions("", 0); len(ds) != 0 {
		t.Fatalf("%d decisions of a dropped pool", len(ds))
	}
}
