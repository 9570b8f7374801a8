package picker_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/picker"
)

// fleetOf is the fleet keys of scorers' own keys, as the control plane
// would aggregate them (each key sent once by one of them).
func fleetOf(ss ...*picker.PrefixScorer) *picker.FleetKeys {
	f := &picker.FleetKeys{}
	for _, s := range ss {
		for _, u := range s.KeysUsedSince(0, nil) {
			f.Once = append(f.Once, u.Key)
		}
	}
	slices.Sort(f.Once)
	return f
}

// Two of 4 proxies that each sent half of 32 shared prompts once plan
// different key sets (each its own half, so a prompt's home depends on
// which proxy asks); given the fleet's keys both plan all 32 with the
// same homes. Without the keys (the stream gone) each falls back to its
// own half.
func TestPrefixHomesFleetKeysAgree(t *testing.T) {
	now := time.Now()
	reqs := groupRequests(32, "q")
	order := make([]int, 32)
	for i := range order {
		order[i] = i
	}
	a, b := picker.NewPrefixScorer(0), picker.NewPrefixScorer(0)
	esA, esB := proxyFleet(t, 8, 4), proxyFleet(t, 8, 4)
	sendOnce(a, reqs[:16], order[:16], esA, now)
	sendOnce(b, reqs[16:], order[:16], esB, now)
	if maps.Equal(picker.PlannedHomesForTest(a), picker.PlannedHomesForTest(b)) {
		t.Fatal("proxies with disjoint prompts plan alike: the test shows nothing")
	}
	f := fleetOf(a, b)
	if len(f.Once) != 32 {
		t.Fatalf("%d fleet keys, want 32", len(f.Once))
	}
	a.SetFleetKeys(f)
	b.SetFleetKeys(f)
	// A pick of a prompt each proxy already sent rebuilds the plan.
	later := now.Add(10 * time.Second)
	picker.PrefixPickForTest(a, reqs[0], esA, later)
	picker.PrefixPickForTest(b, reqs[16], esB, later)
	homesA, homesB := picker.PlannedHomesForTest(a), picker.PlannedHomesForTest(b)
	if len(homesA) != 32 || !maps.Equal(homesA, homesB) {
		t.Fatalf("with the fleet keys: %d and %d keys planned, equal %v; want 32, equal", len(homesA), len(homesB), maps.Equal(homesA, homesB))
	}
	// Fallback: without fleet keys the plan is the own keys again.
	a.SetFleetKeys(nil)
	picker.PrefixPickForTest(a, reqs[0], esA, later.Add(time.Second))
	if n := picker.PlannedForTest(a); n != 16 {
		t.Fatalf("after the fleet keys went: %d keys planned, want the own 16", n)
	}
}

// With one proxy the fleet's once keys (its own, echoed) do not join the
// plan, as its own once keys do not: one proxy plans a prefix at its
// second request. Hot fleet keys do.
func TestPrefixHomesFleetKeysOneProxy(t *testing.T) {
	now := time.Now()
	reqs := groupRequests(8, "q")
	src := picker.NewPrefixScorer(0)
	sendOnce(src, reqs, []int{0, 1, 2, 3, 4, 5, 6, 7}, proxyFleet(t, 8, 4), now)
	f := fleetOf(src)
	s := picker.NewPrefixScorer(0)
	es := proxyFleet(t, 8, 1)
	s.SetFleetKeys(f)
	picker.PrefixPickForTest(s, reqs[0], es, now)
	picker.PrefixPickForTest(s, reqs[0], es, now.Add(time.Second))
	if n := picker.PlannedForTest(s); n != 1 {
		t.Fatalf("one proxy with 8 fleet once keys: %d planned, want 1 (its own hot key)", n)
	}
	s.SetFleetKeys(&picker.FleetKeys{Hot: f.Once})
	picker.PrefixPickForTest(s, reqs[0], es, now.Add(2*time.Second))
	if n := picker.PlannedForTest(s); n != 8 {
		t.Fatalf("one proxy with 8 fleet hot keys: %d planned, want 8", n)
	}
}

// When an endpoint goes, the plan is rebuilt without it at the next pick,
// though no key changed: its prefixes get homes that exist.
func TestPrefixHomesRebuiltOnEndpointChange(t *testing.T) {
	now := time.Now()
	reqs := groupRequests(32, "q")
	es := idleFleet(8)
	s := picker.NewPrefixScorer(0)
	sendTwice(s, reqs, es, now)
	gone := es[3].Hash
	onGone := 0
	for _, h := range picker.PlannedHomesForTest(s) {
		if h == gone {
			onGone++
		}
	}
	if onGone == 0 {
		t.Fatal("no prefix homed on the endpoint to remove: the test shows nothing")
	}
	rest := slices.Delete(slices.Clone(es), 3, 4)
	picker.PrefixPickForTest(s, reqs[0], rest, now.Add(5*time.Second))
	homes := picker.PlannedHomesForTest(s)
	if len(homes) != 32 {
		t.Fatalf("%d keys planned after the change, want 32", len(homes))
	}
	for k, h := range homes {
		if h == gone {
			t.Fatalf("key %x still homed on the removed endpoint", k)
		}
	}
}
