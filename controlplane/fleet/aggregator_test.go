package fleet

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// clock is a settable Now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestAggregator(o Options) (*Aggregator, *clock) {
	c := &clock{t: time.Unix(1000, 0)}
	o.Now = c.now
	return NewAggregator(o), c
}

func report(pool string, window time.Duration, keys ...*fleetv1.KeyUse) *fleetv1.KeyReport {
	return &fleetv1.KeyReport{Pools: []*fleetv1.PoolKeys{{Pool: pool, Window: durationpb.New(window), Keys: keys}}}
}

func use(k uint64, age time.Duration, hot bool) *fleetv1.KeyUse {
	return &fleetv1.KeyUse{Key: k, Age: durationpb.New(age), Hot: hot}
}

func poolSet(t *testing.T, a *Aggregator, gw, pool string) *fleetv1.PoolSet {
	t.Helper()
	set, _ := a.Keys(gw)
	for _, p := range set.GetPools() {
		if p.GetPool() == pool {
			return p
		}
	}
	return &fleetv1.PoolSet{Pool: pool}
}

func mustIngest(t *testing.T, a *Aggregator, gw, node string, r *fleetv1.KeyReport) {
	t.Helper()
	if err := a.Ingest(gw, node, r); err != nil {
		t.Fatal(err)
	}
}

// A key is once until a second proxy reports it or one reports it hot;
// a proxy reporting its own once key again leaves it once.
func TestAggregatorHotAndOnce(t *testing.T) {
	a, _ := newTestAggregator(Options{})
	mustIngest(t, a, "ns/gw", "a", report("p", time.Minute, use(1, 0, false), use(2, 0, false), use(3, 0, true)))
	mustIngest(t, a, "ns/gw", "a", report("p", time.Minute, use(1, 0, false)))
	mustIngest(t, a, "ns/gw", "b", report("p", time.Minute, use(2, 0, false)))
	ps := poolSet(t, a, "ns/gw", "p")
	if !slices.Equal(ps.GetHot(), []uint64{2, 3}) || !slices.Equal(ps.GetOnce(), []uint64{1}) {
		t.Fatalf("hot %v once %v, want hot [2 3] once [1]", ps.GetHot(), ps.GetOnce())
	}
}

// Keys expire a pool's window after their last use (as reported, age
// included), and only then; the version moves on expiry so streams push.
func TestAggregatorExpiry(t *testing.T) {
	a, c := newTestAggregator(Options{})
	mustIngest(t, a, "ns/gw", "a", report("p", time.Minute, use(1, 10*time.Second, false), use(2, 0, false)))
	_, v0 := a.Keys("ns/gw")
	c.t = c.t.Add(45 * time.Second)
	if got := poolSet(t, a, "ns/gw", "p").GetOnce(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("after 45 s: %v, want [1 2]", got)
	}
	c.t = c.t.Add(10 * time.Second) // key 1 last used 65 s ago, key 2 55 s ago
	if got := poolSet(t, a, "ns/gw", "p").GetOnce(); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("after 55 s: %v, want [2]", got)
	}
	c.t = c.t.Add(10 * time.Second)
	// Key 2 is 65 s old but b reports it: refreshed (and hot), not expired.
	mustIngest(t, a, "ns/gw", "b", report("p", time.Minute, use(2, 0, false)))
	ps := poolSet(t, a, "ns/gw", "p")
	if len(ps.GetOnce()) != 0 || !slices.Equal(ps.GetHot(), []uint64{2}) {
		t.Fatalf("after 65 s with key 2 refreshed by b: hot %v once %v, want hot [2]", ps.GetHot(), ps.GetOnce())
	}
	if _, v := a.Keys("ns/gw"); v == v0 {
		t.Fatal("version unchanged after expiry")
	}
	c.t = c.t.Add(2 * time.Minute)
	if set, _ := a.Keys("ns/gw"); len(set.GetPools()) != 0 {
		t.Fatalf("pools left after every key expired: %v", set.GetPools())
	}
}

// A pool keeps at most MaxKeys, the most recently used.
func TestAggregatorBound(t *testing.T) {
	a, _ := newTestAggregator(Options{MaxKeys: 8})
	for i := range 20 {
		// Key i used 20−i seconds ago: the higher, the more recent.
		mustIngest(t, a, "ns/gw", "a", report("p", time.Hour, use(uint64(i), time.Duration(20-i)*time.Second, false)))
		if n := len(poolSet(t, a, "ns/gw", "p").GetOnce()); n > 8 {
			t.Fatalf("%d keys kept, bound 8", n)
		}
	}
	if got := poolSet(t, a, "ns/gw", "p").GetOnce(); !slices.Equal(got, []uint64{12, 13, 14, 15, 16, 17, 18, 19}) {
		t.Fatalf("kept %v, want the 8 most recent (12…19)", got)
	}
	if err := a.Ingest("ns/gw", "a", report("p", time.Hour, make([]*fleetv1.KeyUse, 9)...)); err == nil {
		t.Fatal("a report of more keys than the bound was accepted")
	}
}

// Pools and gateways are separate: a key reported in one pool is not in
// another pool of the gateway nor in another gateway's pool of the same
// name, and two proxies of different gateways do not make a key hot.
func TestAggregatorIsolation(t *testing.T) {
	a, _ := newTestAggregator(Options{})
	mustIngest(t, a, "ns/gw", "a", report("p", time.Minute, use(1, 0, false)))
	mustIngest(t, a, "ns/gw", "a", report("q", time.Minute, use(2, 0, false)))
	mustIngest(t, a, "ns/other", "b", report("p", time.Minute, use(1, 0, false)))
	if got := poolSet(t, a, "ns/gw", "p"); !slices.Equal(got.GetOnce(), []uint64{1}) || len(got.GetHot()) != 0 {
		t.Fatalf("ns/gw pool p: %v", got)
	}
	if got := poolSet(t, a, "ns/gw", "q").GetOnce(); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("ns/gw pool q: %v", got)
	}
	if got := poolSet(t, a, "ns/other", "p"); !slices.Equal(got.GetOnce(), []uint64{1}) || len(got.GetHot()) != 0 {
		t.Fatalf("ns/other pool p: %v", got)
	}
	if got := poolSet(t, a, "ns/other", "q"); len(got.GetOnce())+len(got.GetHot()) != 0 {
		t.Fatalf("ns/other has ns/gw's pool q: %v", got)
	}
}

// Bad reports are refused whole with a reason, and change nothing.
func TestAggregatorRefusesBadReports(t *testing.T) {
	a, _ := newTestAggregator(Options{})
	bad := map[string]*fleetv1.KeyReport{
		"no pool name":    report("", time.Minute, use(1, 0, false)),
		"negative age":    report("p", time.Minute, use(1, -time.Second, false)),
		"negative window": report("p", -time.Minute, use(1, 0, false)),
		"too many pools":  {Pools: make([]*fleetv1.PoolKeys, fleetv1.MaxPoolsPerReport+1)},
	}
	for name, r := range bad {
		if err := a.Ingest("ns/gw", "a", r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if set, v := a.Keys("ns/gw"); v != 0 || len(set.GetPools()) != 0 {
		t.Fatalf("bad reports changed the set: %v (version %d)", set, v)
	}
}

// FuzzIngest feeds arbitrary reports (wire bytes) to an aggregator: it
// refuses or applies each without panicking, and the served set stays
// within the bound with every key either hot or once.
func FuzzIngest(f *testing.F) {
	for _, r := range []*fleetv1.KeyReport{
		report("p", time.Minute, use(1, 0, false), use(2, time.Second, true)),
		report("", 0),
		{NodeId: "n", Gateway: "ns/gw"},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "a")
	}
	f.Fuzz(func(t *testing.T, data []byte, node string) {
		a, c := newTestAggregator(Options{MaxKeys: 16})
		var r fleetv1.KeyReport
		if proto.Unmarshal(data, &r) != nil {
			return
		}
		_ = a.Ingest("ns/gw", node, &r)
		c.t = c.t.Add(time.Second)
		_ = a.Ingest("ns/gw", node+"x", &r)
		set, _ := a.Keys("ns/gw")
		for _, p := range set.GetPools() {
			if n := len(p.GetHot()) + len(p.GetOnce()); n > 16 {
				t.Fatalf("pool %q holds %d keys, bound 16", p.GetPool(), n)
			}
			for _, k := range p.GetHot() {
				if slices.Contains(p.GetOnce(), k) {
					t.Fatalf("key %x both hot and once", k)
				}
			}
		}
	})
}

// Once keys are served while there are at most maxOnceServed of them (or
// of hot keys): beyond, most are unique prompts no proxy plans over, and
// each new one would re-send the set. Then only hot keys are served, and
// a further unique prompt changes nothing served.
func TestAggregatorServesOnceKeysOnlyWhileFew(t *testing.T) {
	a, _ := newTestAggregator(Options{})
	mustIngest(t, a, "ns/gw", "a", report("p", time.Minute, use(1, 0, true)))
	var keys []*fleetv1.KeyUse
	for i := range maxOnceServed {
		keys = append(keys, use(uint64(100+i), 0, false))
	}
	mustIngest(t, a, "ns/gw", "a", report("p", time.Minute, keys...))
	if ps := poolSet(t, a, "ns/gw", "p"); len(ps.GetOnce()) != maxOnceServed || len(ps.GetHot()) != 1 {
		t.Fatalf("%d once and %d hot keys served, want %d and 1", len(ps.GetOnce()), len(ps.GetHot()), maxOnceServed)
	}
	mustIngest(t, a, "ns/gw", "a", report("p", time.Minute, use(99, 0, false)))
	ps := poolSet(t, a, "ns/gw", "p")
	if len(ps.GetOnce()) != 0 || !slices.Equal(ps.GetHot(), []uint64{1}) {
		t.Fatalf("beyond the bound: once %d, hot %v; want none and [1]", len(ps.GetOnce()), ps.GetHot())
	}
	_, v := a.Keys("ns/gw")
	mustIngest(t, a, "ns/gw", "a", report("p", time.Minute, use(98, 0, false)))
	if _, v2 := a.Keys("ns/gw"); v2 != v {
		t.Fatalf("a unique prompt beyond the bound changed the served version %d → %d", v, v2)
	}
	mustIngest(t, a, "ns/gw", "b", report("p", time.Minute, use(98, 0, false)))
	if _, v3 := a.Keys("ns/gw"); v3 == v {
		t.Fatal("a key turning hot left the served version")
	}
}

// streams is the number of streams subscribed to gw.
func (a *Aggregator) streams(gw string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if g := a.gateways[gw]; g != nil {
		return len(g.subs)
	}
	return 0
}
