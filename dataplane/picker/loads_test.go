package picker_test

import (
	"fmt"
	"testing"
	"time"
)

// Two proxies, each with its own scrapes: a holds a newer scrape showing
// one endpoint with a long queue, b an older one showing it idle. Once
// the fleet exchange hands b a's scrape, b sends nothing there, like a;
// a scrape older than b's own changes nothing.
func TestCostRelayedScrapeSteersLikeItsTaker(t *testing.T) {
	a, b := newCostFleet(t, 4), newCostFleet(t, 4)
	a.s.SetEndpoints(a.es)
	b.s.SetEndpoints(b.es)
	a.now = a.now.Add(40 * time.Millisecond)
	b.now = a.now
	a.state[2].Waiting, a.state[2].Running = 12, 40
	a.scrape()
	q := func(i int) []byte { return chatBody(fmt.Sprintf("q%d", i), "unrelated question") }
	hits := func(f *costFleet) int {
		n := 0
		for i := range 40 {
			if f.explain(q(i)).Chosen == f.es[2].Address {
				n++
			}
		}
		return n
	}
	if n := hits(a); n != 0 {
		t.Fatalf("proxy a, whose scrape shows the queue: %d of 40 picks to the busy endpoint", n)
	}
	if n := hits(b); n == 0 {
		t.Fatal("proxy b, before the exchange: no pick to the endpoint it believes idle (the test cannot tell otherwise)")
	}
	if n := b.s.Fleet().MergeLoads(a.s.Fleet().Loads(nil)); n != 4 {
		t.Fatalf("b took %d of a's 4 newer scrapes", n)
	}
	if n := hits(b); n != 0 {
		t.Fatalf("proxy b with a's scrape: %d of 40 picks to the busy endpoint", n)
	}
	// b scrapes again (the queue is gone); a's older scrape is not taken.
	b.now = b.now.Add(50 * time.Millisecond)
	b.scrape()
	if n := b.s.Fleet().MergeLoads(a.s.Fleet().Loads(nil)); n != 0 {
		t.Fatalf("b took %d scrapes older than its own", n)
	}
	if n := hits(b); n == 0 {
		t.Fatal("after b's own newer scrape: no pick to the now idle endpoint")
	}
	// A relayed scrape is not reported on: b's own are.
	if ls := b.s.Fleet().Loads(nil); len(ls) != 4 || ls[0].Metrics.Relayed {
		t.Fatalf("b's loads to report: %d (first relayed: %v)", len(ls), ls[0].Metrics.Relayed)
	}
	a.s.Fleet().MergeLoads(b.s.Fleet().Loads(nil))
	if ls := a.s.Fleet().Loads(nil); len(ls) != 0 {
		t.Fatalf("a reports %d scrapes it took from b", len(ls))
	}
}
