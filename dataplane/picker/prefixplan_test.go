package picker_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// groupRequests are n shared system prompts, as in the benchmark.
func groupRequests(n int, question string) []*picker.Request {
	out := make([]*picker.Request, n)
	for i := range out {
		sys := fmt.Sprintf("You are assistant %d. ", i) + strings.Repeat("be helpful and brief. ", 150)
		out[i] = &picker.Request{Model: "m", Body: chatBody(sys, question)}
	}
	return out
}

// sendTwice sends every request twice in order (the second makes its
// prefix hot) and then once more after the plan's rebuild interval,
// returning where each went last.
func sendTwice(s *picker.PrefixScorer, reqs []*picker.Request, es []*endpoints.Endpoint, now time.Time) []string {
	for _, r := range reqs {
		picker.PrefixPickForTest(s, r, es, now)
	}
	for _, r := range reqs {
		picker.PrefixPickForTest(s, r, es, now)
	}
	now = now.Add(time.Second)
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i], _ = picker.PrefixPickForTest(s, r, es, now)
	}
	return out
}

// idleFleet is n endpoints scraped just now with nothing queued.
func idleFleet(n int) []*endpoints.Endpoint {
	es := eps(n)
	for _, e := range es {
		fresh(e, endpoints.Metrics{})
	}
	return es
}

// rendezvousOnly is a prefix scorer without the balance plan.
func rendezvousOnly() *picker.PrefixScorer {
	s := picker.NewPrefixScorer(0)
	s.Balance = 0
	return s
}

func maxPerEndpoint(homes []string) int {
	n := map[string]int{}
	m := 0
	for _, h := range homes {
		n[h]++
		m = max(m, n[h])
	}
	return m
}

// Hot prefixes are spread so that no endpoint homes more than
// ⌈1.25 × 32 / 8⌉ = 5 of 32, where plain rendezvous hashing of the same
// prefixes piles up to 7 or more on one.
func TestPrefixHomesBalanced(t *testing.T) {
	es, now := idleFleet(8), time.Now()
	reqs := groupRequests(32, "q")
	plain := rendezvousOnly()
	if m := maxPerEndpoint(sendTwice(plain, reqs, es, now)); m <= 5 {
		t.Fatalf("rendezvous alone homes at most %d prefixes per endpoint here; the test needs an unbalanced set", m)
	}
	got := sendTwice(picker.NewPrefixScorer(0), reqs, es, now)
	if m := maxPerEndpoint(got); m > 5 {
		t.Fatalf("balanced plan homes %d prefixes on one endpoint, want ≤ 5: %v", m, got)
	}
	// Another proxy that saw the same prefixes in another order and with
	// other questions agrees on every home.
	rev := groupRequests(32, "another question")
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	other := sendTwice(picker.NewPrefixScorer(0), rev, es, now)
	for i := range got {
		if other[len(other)-1-i] != got[i] {
			t.Fatalf("prefix %d: homed on %s by one proxy, %s by another", i, got[i], other[len(other)-1-i])
		}
	}
}

// A prompt sent once is not hot: it keeps its rendezvous choice, and
// unique prompts cost no plan.
func TestPrefixHomesOnlyRepeatedPrefixes(t *testing.T) {
	es, now := idleFleet(8), time.Now()
	reqs := groupRequests(32, "q")
	plain := rendezvousOnly()
	balanced := picker.NewPrefixScorer(0)
	for _, r := range reqs {
		a, _ := picker.PrefixPickForTest(plain, r, es, now)
		b, _ := picker.PrefixPickForTest(balanced, r, es, now.Add(time.Second))
		if a != b {
			t.Fatalf("a first sighting went to %s, rendezvous says %s", b, a)
		}
	}
}

// The overloaded home of a hot prefix hands it to the runner-up, like
// plain affinity does.
func TestPrefixHomesRespectLoadBound(t *testing.T) {
	es, now := idleFleet(8), time.Now()
	reqs := groupRequests(4, "q")
	s := picker.NewPrefixScorer(0)
	homes := sendTwice(s, reqs, es, now)
	at := now.Add(2 * time.Second)
	for _, e := range es {
		m := &endpoints.Metrics{At: at}
		if e.Address == homes[0] {
			m.Waiting = 40
		}
		e.SetMetrics(m)
	}
	got, _ := picker.PrefixPickForTest(s, reqs[0], es, at)
	if got == homes[0] || got == "" {
		t.Fatalf("overloaded home %s kept the prefix (got %q)", homes[0], got)
	}
}

// The plan is the stable matching: no key prefers an endpoint (higher
// weight) that has room for it or holds a key it outranks there, and no
// endpoint holds more than its capacity.
func TestMatchHomesStable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		keys := make([]uint64, 1+rng.IntN(60))
		for i := range keys {
			keys[i] = rng.Uint64()
		}
		eps := make([]uint64, 1+rng.IntN(12))
		for i := range eps {
			eps[i] = rng.Uint64()
		}
		capacity := max((len(keys)+len(eps)-1)/len(eps), 1+rng.IntN(4))
		plan := picker.MatchHomesForTest(keys, eps, capacity)
		if len(plan) != len(keys) {
			t.Fatalf("round %d: %d of %d keys placed", round, len(plan), len(keys))
		}
		held := map[uint64][]uint64{}
		for k, e := range plan {
			held[e] = append(held[e], k)
		}
		for _, ks := range held {
			if len(ks) > capacity {
				t.Fatalf("round %d: endpoint holds %d keys, capacity %d", round, len(ks), capacity)
			}
		}
		for _, k := range keys {
			own := picker.Mix(k ^ plan[k])
			for _, e := range eps {
				w := picker.Mix(k ^ e)
				if w <= own {
					continue
				}
				if len(held[e]) < capacity {
					t.Fatalf("round %d: key prefers an endpoint with room", round)
				}
				for _, o := range held[e] {
					if picker.Mix(o^e) < w {
						t.Fatalf("round %d: key outranks a key held by an endpoint it prefers", round)
					}
				}
			}
		}
	}
}

func TestPrefixProfileParameters(t *testing.T) {
	p := &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "prefix-cache", Weight: 3,
		Parameters: map[string]string{"balance": "1.5", "min-homes": "2", "window-seconds": "30"}}}}
	s, err := picker.FromProfile(p)
	if err != nil {
		t.Fatal(err)
	}
	ps := s.Scorers()[0].Scorer.(*picker.PrefixScorer)
	if ps.Balance != 1.5 || ps.MinHomes != 2 || ps.Window != 30*time.Second {
		t.Fatalf("parameters not applied: balance %v min-homes %d window %v", ps.Balance, ps.MinHomes, ps.Window)
	}
	bad := &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "prefix-cache", Weight: 1,
		Parameters: map[string]string{"balance": "x"}}}}
	if _, err := picker.FromProfile(bad); err == nil {
		t.Fatal("a non-numeric balance must be refused")
	}
}

// A prefix seen for the first time goes where the plan would put it once
// hot: with 20 hot prefixes on 8 endpoints (at most 3 each) a new prompt
// whose rendezvous choice is full goes to an endpoint with room unless it
// outranks a prefix held there, so it does not move on its next request
// after a cold prefill.
func TestPrefixHomesNewPrefixWhereRoom(t *testing.T) {
	es, now := idleFleet(8), time.Now()
	s := picker.NewPrefixScorer(0)
	s.Balance, s.MinHomes = 1, 1
	homes := map[string]int{}
	for _, h := range sendTwice(s, groupRequests(20, "q"), es, now) {
		homes[h]++
	}
	plain := rendezvousOnly()
	moved, toRoom := 0, 0
	for i := range 200 {
		r := &picker.Request{Model: "m", Body: chatBody(fmt.Sprintf("new prompt %d ", i)+strings.Repeat("x", 2100), "q")}
		want, _ := picker.PrefixPickForTest(plain, r, es, now)
		got, _ := picker.PrefixPickForTest(s, r, es, now.Add(time.Second))
		if got == want {
			continue
		}
		// Only a full endpoint hands a new prefix on: to one with room,
		// or to a full one holding a prefix it outranks.
		moved++
		if homes[want] < 3 {
			t.Fatalf("new prefix went to %s instead of its rendezvous choice %s with room (%d homes)", got, want, homes[want])
		}
		if homes[got] < 3 {
			toRoom++
		}
	}
	if moved == 0 || toRoom == 0 {
		t.Fatalf("%d new prefixes kept off a full endpoint, %d of them to one with room", moved, toRoom)
	}
}

// A hot prefix at its planned home gets no runner-up: the half affinity
// would let a queue of two or the home's higher KV use spill it into a
// cold prefill elsewhere. A prompt seen for the first time keeps one.
func TestPrefixHomesNoRunnerUpAtHome(t *testing.T) {
	es, now := idleFleet(8), time.Now()
	reqs := groupRequests(32, "q")
	s := picker.NewPrefixScorer(0)
	homes := sendTwice(s, reqs, es, now)
	plain := rendezvousOnly()
	checked := 0
	for i, r := range reqs {
		if top, _ := picker.PrefixPickForTest(plain, r, es, now); top != homes[i] {
			continue // sent to two endpoints: the index credits both
		}
		checked++
		q := &picker.Request{Model: "m", Body: append([]byte(nil), r.Body...)}
		q.Body = []byte(strings.Replace(string(q.Body), `"q"`, `"another question"`, 1))
		sum := 0.0
		for _, v := range picker.ScoreForTest(s, q, es, now.Add(time.Second)) {
			sum += v
		}
		if sum != 1 {
			t.Fatalf("prefix %d at its home: scores sum to %v, want 1 (home only)", i, sum)
		}
	}
	if checked == 0 {
		t.Fatal("no prefix stayed on its rendezvous choice")
	}
	sum := 0.0
	for _, v := range picker.ScoreForTest(s, &picker.Request{Model: "m", Body: chatBody("a prompt never sent "+strings.Repeat("y", 2100), "q")}, es, now) {
		sum += v
	}
	if sum != 1.5 {
		t.Fatalf("a new prompt's scores sum to %v, want 1.5 (choice and runner-up)", sum)
	}
}

// proxyFleet is n idle endpoints of a proxy that is one of proxies.
func proxyFleet(t *testing.T, n, proxies int) []*endpoints.Endpoint {
	t.Helper()
	reg := endpoints.NewRegistry(slog.New(slog.DiscardHandler), endpoints.Options{Proxies: proxies})
	t.Cleanup(reg.Close)
	specs := make([]endpoints.Spec, n)
	for i := range specs {
		specs[i] = endpoints.Spec{Address: fmt.Sprintf("10.0.0.%d:8000", i+1)}
	}
	byAddr := reg.Sync(specs)
	es := make([]*endpoints.Endpoint, n)
	for i, s := range specs {
		es[i] = byAddr[s.Address]
		fresh(es[i], endpoints.Metrics{})
	}
	return es
}

// sendOnce sends every request once, a plan rebuild interval apart, in
// the given order, and returns where each went.
func sendOnce(s *picker.PrefixScorer, reqs []*picker.Request, order []int, es []*endpoints.Endpoint, now time.Time) []string {
	out := make([]string, len(reqs))
	for n, i := range order {
		out[i], _ = picker.PrefixPickForTest(s, reqs[i], es, now.Add(time.Duration(n)*100*time.Millisecond))
	}
	return out
}

// With 4 proxies a prefix joins the plan at its first request to this
// proxy (each proxy sees a quarter of a prefix's requests, and waiting for
// a second one here would leave the proxies' plans apart 4 times longer):
// two proxies that each got the 32 group prompts once, in different
// orders, agree on every home, and the homes are balanced (at most
// ⌈1.25 × 32 / 8⌉ = 5 per endpoint, where rendezvous alone puts more on
// one, see TestPrefixHomesBalanced).
func TestPrefixHomesFirstSightingWithProxies(t *testing.T) {
	now := time.Now()
	reqs := groupRequests(32, "q")
	fwd, rev := make([]int, len(reqs)), make([]int, len(reqs))
	for i := range reqs {
		fwd[i], rev[i] = i, len(reqs)-1-i
	}
	a, b := picker.NewPrefixScorer(0), picker.NewPrefixScorer(0)
	esA, esB := proxyFleet(t, 8, 4), proxyFleet(t, 8, 4)
	sendOnce(a, reqs, fwd, esA, now)
	sendOnce(b, reqs, rev, esB, now)
	if n := picker.PlannedForTest(a); n != len(reqs) {
		t.Fatalf("plan holds %d of %d prompts sent once", n, len(reqs))
	}
	later := now.Add(10 * time.Second)
	homesA := sendOnce(a, reqs, fwd, esA, later)
	homesB := sendOnce(b, reqs, fwd, esB, later)
	for i := range reqs {
		if homesA[i] != homesB[i] {
			t.Fatalf("prompt %d: proxies home it on %s and %s", i, homesA[i], homesB[i])
		}
	}
	if m := maxPerEndpoint(homesA); m > 5 {
		t.Fatalf("an endpoint homes %d prefixes, cap 5", m)
	}
	// One proxy waits for the second request: nothing is planned yet.
	one := picker.NewPrefixScorer(0)
	sendOnce(one, reqs, fwd, proxyFleet(t, 8, 1), now)
	if n := picker.PlannedForTest(one); n != 0 {
		t.Fatalf("one proxy planned %d prompts sent once", n)
	}
}

// Prompts sent once stop counting when there are more of them than 4 per
// endpoint and than prompts sent twice: most are then unique prompts,
// which would crowd the shared prefixes out of the plan. Prompts sent
// twice still count.
func TestPrefixHomesTentativeBounded(t *testing.T) {
	now := time.Now()
	es := proxyFleet(t, 8, 4)
	s := picker.NewPrefixScorer(0)
	var reqs []*picker.Request
	order := []int{}
	for i := range 34 {
		reqs = append(reqs, &picker.Request{Model: "m", Body: chatBody(fmt.Sprintf("unique prompt %d ", i)+strings.Repeat("z", 2100), "q")})
		order = append(order, i)
	}
	sendOnce(s, reqs[:32], order[:32], es, now)
	if n := picker.PlannedForTest(s); n != 32 {
		t.Fatalf("32 prompts sent once on 8 endpoints: %d planned, want 32", n)
	}
	at := now.Add(10 * time.Second)
	picker.PrefixPickForTest(s, reqs[32], es, at)
	if n := picker.PlannedForTest(s); n != 0 {
		t.Fatalf("33 prompts sent once on 8 endpoints: %d planned, want 0", n)
	}
	picker.PrefixPickForTest(s, reqs[33], es, at.Add(time.Second))
	picker.PrefixPickForTest(s, reqs[0], es, at.Add(2*time.Second))
	if n := picker.PlannedForTest(s); n != 1 {
		t.Fatalf("one prompt sent twice among 33 sent once: %d planned, want 1", n)
	}
}
