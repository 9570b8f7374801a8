package fleet

import (
	"fmt"
	"slices"
	"testing"
	"time"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

func loadsReport(loads ...*fleetv1.EndpointLoad) *fleetv1.KeyReport {
	return &fleetv1.KeyReport{Loads: loads}
}

func load(ep uint64, waiting float64, age time.Duration) *fleetv1.EndpointLoad {
	return &fleetv1.EndpointLoad{Endpoint: ep, Waiting: waiting, AgeMs: uint32(age / time.Millisecond)}
}

// pushLoads subscribes a stream of node to gw and returns a function that
// builds its next push's scrapes as "ep:waiting@age".
func pushLoads(a *Aggregator, gw, node string) func() []string {
	_, ring, loads := a.subscribe(gw)
	st := &streamState{node: node, takesSends: true, cursor: ring.start(false), loads: loads, loadCursor: loads.start()}
	return func() []string {
		msg, _ := a.next(gw, ring, st)
		var out []string
		for _, l := range msg.GetLoads() {
			out = append(out, fmt.Sprintf("%d:%g@%d", l.GetEndpoint(), l.GetWaiting(), l.GetAgeMs()))
		}
		slices.Sort(out)
		return out
	}
}

// A proxy's scrapes go to the gateway's other proxies, never back to it,
// each once, aged by the time the control plane held them; per endpoint
// only the newest scrape is kept and pushed, whoever took it.
func TestLoadsRelayNewestPerEndpoint(t *testing.T) {
	a, c := newTestAggregator(Options{})
	readA, readB := pushLoads(a, "ns/gw", "a"), pushLoads(a, "ns/gw", "b")
	mustIngest(t, a, "ns/gw", "a", loadsReport(load(1, 5, 10*time.Millisecond), load(2, 7, 0)))
	c.t = c.t.Add(5 * time.Millisecond)
	if got, want := readB(), []string{"1:5@15", "2:7@5"}; !slices.Equal(got, want) {
		t.Fatalf("proxy b got %v, want %v", got, want)
	}
	if got := readB(); len(got) != 0 {
		t.Fatalf("proxy b got %v again", got)
	}
	if got := readA(); len(got) != 0 {
		t.Fatalf("proxy a got its own scrapes back: %v", got)
	}
	// b's scrape of endpoint 1 is newer than a's: a gets it. Then a's
	// scrape of endpoint 2 taken before b's newest is refused.
	mustIngest(t, a, "ns/gw", "b", loadsReport(load(1, 1, 0), load(2, 3, 1*time.Millisecond)))
	mustIngest(t, a, "ns/gw", "a", loadsReport(load(2, 9, 50*time.Millisecond)))
	if got, want := readA(), []string{"1:1@0", "2:3@1"}; !slices.Equal(got, want) {
		t.Fatalf("proxy a got %v, want %v", got, want)
	}
	if got := readB(); len(got) != 0 {
		t.Fatalf("proxy b got %v: an older scrape than its own newest", got)
	}
	// A third proxy joining gets the newest of each endpoint, once.
	readC := pushLoads(a, "ns/gw", "c")
	if got, want := readC(), []string{"1:1@0", "2:3@1"}; !slices.Equal(got, want) {
		t.Fatalf("a new proxy got %v, want %v", got, want)
	}
	// Held scrapes (the superseded ones too, until then) age out.
	c.t = c.t.Add(loadAge + time.Millisecond)
	if n := a.gateways["ns/gw"].loads.size(); n != 4 {
		t.Fatalf("before a read: %d held, want the 4 accepted", n)
	}
	readD := pushLoads(a, "ns/gw", "d")
	if got := readD(); len(got) != 0 {
		t.Fatalf("scrapes older than %v pushed: %v", loadAge, got)
	}
	if n := a.gateways["ns/gw"].loads.size(); n != 0 {
		t.Fatalf("%d scrapes still held after %v", n, loadAge)
	}
}

// A proxy reporting more endpoints than the log holds pushes older scrapes
// out; the log never grows beyond its bound.
func TestLoadsBounded(t *testing.T) {
	a, _ := newTestAggregator(Options{})
	for i := range 3 {
		ls := make([]*fleetv1.EndpointLoad, fleetv1.MaxLoadsPerReport)
		for j := range ls {
			ls[j] = load(uint64(i*len(ls)+j), 1, 0)
		}
		mustIngest(t, a, "ns/gw", "a", loadsReport(ls...))
	}
	if n := a.gateways["ns/gw"].loads.size(); n > maxLoadLog {
		t.Fatalf("%d scrapes held, bound %d", n, maxLoadLog)
	}
	if n := len(a.gateways["ns/gw"].loads.newest); n > maxLoadLog {
		t.Fatalf("%d endpoints remembered, bound %d", n, maxLoadLog)
	}
}

// A report with a scrape outside its domain is refused whole.
func TestLoadsRefusedWhenInvalid(t *testing.T) {
	a, _ := newTestAggregator(Options{})
	if err := a.Ingest("ns/gw", "a", loadsReport(load(1, 1, 0), load(2, -1, 0))); err == nil {
		t.Fatal("a report with a negative waiting count was accepted")
	}
	readB := pushLoads(a, "ns/gw", "b")
	if got := readB(); len(got) != 0 {
		t.Fatalf("part of a refused report pushed: %v", got)
	}
}
