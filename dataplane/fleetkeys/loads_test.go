package fleetkeys

import (
	"log/slog"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// A report carries each own scrape once (an endpoint two pools name, in
// one of them), aged from when it was taken, and no scrape older than the
// exchange carries; a push's scrapes reach every pool's picker in the
// proxy's clock, a malformed one dropped and counted.
func TestClientLoads(t *testing.T) {
	c := New(Config{NodeID: "n", Gateway: "ns/gw", Logger: slog.New(slog.DiscardHandler)})
	now := time.Unix(1000, 0)
	fresh := &endpoints.Metrics{Waiting: 2, Running: 5, KVCacheUsage: 0.25, KVCapacity: 8192, At: now.Add(-30 * time.Millisecond)}
	old := &endpoints.Metrics{At: now.Add(-fleetv1.MaxLoadAge - time.Second)}
	p, q := &fakeFleet{loads: []picker.Load{{Endpoint: 1, Metrics: fresh}, {Endpoint: 2, Metrics: old}}},
		&fakeFleet{loads: []picker.Load{{Endpoint: 1, Metrics: fresh}}}
	pools := &fleets{m: map[string]picker.Fleet{"p": p, "q": q}}
	c.cfg.Pools = pools

	got := c.loadsSince(pools.Fleets(), now)
	if len(got) != 1 || got[0].GetEndpoint() != 1 || got[0].GetWaiting() != 2 || got[0].GetKvCapacityTokens() != 8192 || got[0].GetAgeMs() != 30 {
		t.Fatalf("first report's scrapes: %v; want endpoint 1's, 30 ms old, once", got)
	}
	if again := c.loadsSince(pools.Fleets(), now.Add(10*time.Millisecond)); len(again) != 0 {
		t.Fatalf("the same scrapes reported again: %v", again)
	}
	newer := *fresh
	newer.At = now
	p.loads[0].Metrics = &newer
	if got := c.loadsSince(pools.Fleets(), now.Add(10*time.Millisecond)); len(got) != 1 || got[0].GetAgeMs() != 10 {
		t.Fatalf("a newer scrape: reported %v", got)
	}

	c.mergeLoads([]*fleetv1.EndpointLoad{
		{Endpoint: 7, Waiting: 4, KvCacheUsage: 0.5, AgeMs: 20},
		{Endpoint: 8, KvCacheUsage: 2},
	}, now)
	for name, f := range map[string]*fakeFleet{"p": p, "q": q} {
		if len(f.adopted) != 1 {
			t.Fatalf("pool %s was handed %d scrapes, want the valid one", name, len(f.adopted))
		}
		if l := f.adopted[0]; l.Endpoint != 7 || l.Metrics.Waiting != 4 || !l.Metrics.At.Equal(now.Add(-20*time.Millisecond)) {
			t.Fatalf("pool %s was handed %+v at %v", name, l, l.Metrics.At)
		}
	}
	if n := c.badLoads.Load(); n != 1 {
		t.Fatalf("%d malformed scrapes counted, want 1", n)
	}
	if st := State(pools, c); st["p"].Loads.Adopted != 1 || st["q"].Loads.Adopted != 1 || st["p"].Loads.Reported+st["q"].Loads.Reported != 2 {
		t.Fatalf("admin counts %+v", st)
	}

	c.forgetReported(now.Add(fleetv1.MaxLoadAge + time.Minute))
	if len(c.reported) != 0 {
		t.Fatalf("reported times kept for scrapes older than the exchange carries: %v", c.reported)
	}
}
