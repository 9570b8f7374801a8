package fleet

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// send is one send as a test writes it: endpoint and keys.
type send struct {
	ep   uint64
	keys []uint64
}

func sendsReport(pool string, sends ...send) *fleetv1.KeyReport {
	ps := &fleetv1.PoolSends{Pool: pool}
	for _, s := range sends {
		ps.Add(fleetv1.Sent{Endpoint: s.ep, Keys: s.keys})
	}
	return &fleetv1.KeyReport{Sends: []*fleetv1.PoolSends{ps}}
}

// flatten lists the sends of a push as "pool:ep:k1,k2" in order.
func flatten(ps []*fleetv1.PoolSends) []string {
	var out []string
	for _, p := range ps {
		for snd := range p.All() {
			ks := make([]string, len(snd.Keys))
			for i, k := range snd.Keys {
				ks[i] = fmt.Sprint(k)
			}
			out = append(out, fmt.Sprintf("%s:%d:%s", p.GetPool(), snd.Endpoint, strings.Join(ks, ",")))
		}
	}
	return out
}

// pushSends subscribes a stream of node to gw and returns a function that
// builds its next push's sends.
func pushSends(a *Aggregator, gw, node string, catchUp bool) func() ([]string, bool) {
	_, ring, _ := a.subscribe(gw)
	st := &streamState{node: node, takesSends: true, cursor: ring.start(catchUp)}
	return func() ([]string, bool) {
		msg, more := a.next(gw, ring, st)
		return flatten(msg.GetSends()), more
	}
}

// A stream gets the other proxies' sends in the order they were made,
// grouped by pool, never its own, each once.
func TestSendsOrderAndNeverOwn(t *testing.T) {
	a, _ := newTestAggregator(Options{})
	readA, readB, readC := pushSends(a, "ns/gw", "a", false), pushSends(a, "ns/gw", "b", false), pushSends(a, "ns/gw", "c", false)
	mustIngest(t, a, "ns/gw", "a", sendsReport("p", send{1, []uint64{10, 11}}, send{2, []uint64{20}}))
	mustIngest(t, a, "ns/gw", "b", sendsReport("q", send{3, []uint64{30}}))
	mustIngest(t, a, "ns/gw", "a", sendsReport("p", send{1, []uint64{12}}))
	for _, tc := range []struct {
		node string
		read func() ([]string, bool)
		want []string
	}{
		{"a", readA, []string{"q:3:30"}},
		{"b", readB, []string{"p:1:10,11", "p:2:20", "p:1:12"}},
		{"c", readC, []string{"p:1:10,11", "p:2:20", "p:1:12", "q:3:30"}},
	} {
		got, more := tc.read()
		if !slices.Equal(got, tc.want) || more {
			t.Errorf("proxy %s got %v (more %v), want %v", tc.node, got, more, tc.want)
		}
		if again, _ := tc.read(); len(again) != 0 {
			t.Errorf("proxy %s got %v again", tc.node, again)
		}
	}
	// Another gateway's stream sees none of them.
	if got, _ := pushSends(a, "ns/other", "c", true)(); len(got) != 0 {
		t.Errorf("another gateway's proxy got %v", got)
	}
}

// A new stream starts after the sends made so far, unless it asks to
// catch up: then it gets those the ring still holds (within SendAge).
func TestSendsCatchUp(t *testing.T) {
	a, c := newTestAggregator(Options{SendAge: 30 * time.Second})
	mustIngest(t, a, "ns/gw", "a", sendsReport("p", send{1, []uint64{10}}))
	c.t = c.t.Add(20 * time.Second)
	mustIngest(t, a, "ns/gw", "a", sendsReport("p", send{2, []uint64{20}}))
	c.t = c.t.Add(15 * time.Second) // the first is 35 s old now
	if got, _ := pushSends(a, "ns/gw", "b", true)(); !slices.Equal(got, []string{"p:2:20"}) {
		t.Errorf("catching up: %v, want only the send younger than 30 s", got)
	}
	fresh := pushSends(a, "ns/gw", "b", false)
	if got, _ := fresh(); len(got) != 0 {
		t.Errorf("a stream not catching up got %v", got)
	}
	mustIngest(t, a, "ns/gw", "a", sendsReport("p", send{3, []uint64{30}}))
	if got, _ := fresh(); !slices.Equal(got, []string{"p:3:30"}) {
		t.Errorf("after a new send: %v", got)
	}
}

// The ring holds at most MaxSends sends and MaxSendKeys keys: a stream
// that did not read in time skips the dropped ones, which is counted,
// and gets the rest.
func TestSendsRingOverflow(t *testing.T) {
	a, _ := newTestAggregator(Options{MaxSends: 4, MaxSendKeys: 100})
	read := pushSends(a, "ns/gw", "b", false)
	for i := range 10 {
		mustIngest(t, a, "ns/gw", "a", sendsReport("p", send{uint64(i), []uint64{uint64(i)}}))
	}
	got, _ := read()
	if want := []string{"p:6:6", "p:7:7", "p:8:8", "p:9:9"}; !slices.Equal(got, want) {
		t.Fatalf("after 10 sends into a ring of 4: %v, want %v", got, want)
	}
	if s, b := a.stats.skipped.Load(), a.stats.behind.Load(); s != 6 || b != 1 {
		t.Fatalf("skipped %d sends in %d catch-ups, want 6 in 1", s, b)
	}
	// The key bound: three sends of 40 keys keep only the newest two.
	keys := func(base uint64) []uint64 {
		ks := make([]uint64, 40)
		for i := range ks {
			ks[i] = base + uint64(i)
		}
		return ks
	}
	mustIngest(t, a, "ns/gw", "a", sendsReport("p", send{1, keys(100)}, send{2, keys(200)}, send{3, keys(300)}))
	if n, k := a.buffered(); n != 2 || k != 80 {
		t.Fatalf("holding %d sends of %d keys, want 2 of 80 (bound 100 keys)", n, k)
	}
	if got, _ := read(); len(got) != 2 || !strings.HasPrefix(got[0], "p:2:") {
		t.Fatalf("got %d sends starting %.10v, want the newest two", len(got), got)
	}
}

// A push carries at most a budget of keys (one send at least); the rest
// goes in the next message.
func TestSendsReadBudget(t *testing.T) {
	r := newSendRing(sendLimits{sends: 100, keys: 1000, age: int64(time.Minute)})
	rep := sendsReport("p", send{1, []uint64{1, 2, 3}}, send{2, []uint64{4, 5, 6}}, send{3, []uint64{7}})
	r.add(0, "a", rep.GetSends())
	out, cur, _, more := r.read(0, 0, "b", 2, nil)
	if got := flatten(out); !slices.Equal(got, []string{"p:1:1,2,3"}) || !more || cur != 1 {
		t.Fatalf("budget 2: %v more %v cursor %d; want the first send alone, more, cursor 1", got, more, cur)
	}
	out, cur, _, more = r.read(0, cur, "b", 4, nil)
	if got := flatten(out); !slices.Equal(got, []string{"p:2:4,5,6", "p:3:7"}) || more || cur != 3 {
		t.Fatalf("budget 4: %v more %v cursor %d", got, more, cur)
	}
}

// A proxy that did not say it takes sends gets full key sets as before
// and never a send; one that did gets keys_unchanged when only sends are
// new.
func TestSendsOnlyToProxiesThatTakeThem(t *testing.T) {
	a, _ := newTestAggregator(Options{})
	_, ring, _ := a.subscribe("ns/gw")
	old := &streamState{node: "old", cursor: ring.start(false)}
	cur := &streamState{node: "new", takesSends: true, cursor: ring.start(false)}
	mustIngest(t, a, "ns/gw", "a", report("p", time.Minute, use(1, 0, false)))
	for _, st := range []*streamState{old, cur} {
		msg, _ := a.next("ns/gw", ring, st)
		if len(msg.GetPools()) != 1 || msg.GetKeysUnchanged() {
			t.Fatalf("%s: first push %v, want the key set", st.node, msg)
		}
	}
	mustIngest(t, a, "ns/gw", "a", sendsReport("p", send{1, []uint64{10}}))
	if msg, _ := a.next("ns/gw", ring, old); msg != nil {
		t.Fatalf("a proxy that takes no sends got %v", msg)
	}
	msg, _ := a.next("ns/gw", ring, cur)
	if !msg.GetKeysUnchanged() || len(msg.GetPools()) != 0 || !slices.Equal(flatten(msg.GetSends()), []string{"p:1:10"}) {
		t.Fatalf("sends-only push %v, want keys_unchanged and the send", msg)
	}
}

// Bad sends make the whole report refused (its keys included), and
// nothing is held.
func TestSendsRefused(t *testing.T) {
	a, _ := newTestAggregator(Options{})
	withSends := func(ps *fleetv1.PoolSends) *fleetv1.KeyReport {
		r := report("p", time.Minute, use(1, 0, false))
		r.Sends = []*fleetv1.PoolSends{ps}
		return r
	}
	many := &fleetv1.PoolSends{Pool: "p"}
	for range fleetv1.MaxSendsPerReport + 1 {
		many.Add(fleetv1.Sent{Endpoint: 1, Keys: []uint64{1}})
	}
	manyKeys := &fleetv1.PoolSends{Pool: "p"}
	for range fleetv1.MaxKeysPerReport/fleetv1.MaxKeysPerSend + 1 {
		manyKeys.Add(fleetv1.Sent{Endpoint: 1, Keys: make([]uint64, fleetv1.MaxKeysPerSend)})
	}
	for name, r := range map[string]*fleetv1.KeyReport{
		"more endpoints than counts": withSends(&fleetv1.PoolSends{Pool: "p", Endpoints: []uint64{1, 2}, KeyCounts: []uint32{1}, Keys: []uint64{1}}),
		"counts beyond the keys":     withSends(&fleetv1.PoolSends{Pool: "p", Endpoints: []uint64{1}, KeyCounts: []uint32{2}, Keys: []uint64{1}}),
		"keys beyond the counts":     withSends(&fleetv1.PoolSends{Pool: "p", Endpoints: []uint64{1}, KeyCounts: []uint32{1}, Keys: []uint64{1, 2}}),
		"a send too long":            withSends(&fleetv1.PoolSends{Pool: "p", Endpoints: []uint64{1}, KeyCounts: []uint32{fleetv1.MaxKeysPerSend + 1}, Keys: make([]uint64, fleetv1.MaxKeysPerSend+1)}),
		"no pool name":               withSends(&fleetv1.PoolSends{Endpoints: []uint64{1}, KeyCounts: []uint32{1}, Keys: []uint64{1}}),
		"too many sends":             withSends(many),
		"too many keys":              withSends(manyKeys),
	} {
		if err := a.Ingest("ns/gw", "a", r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if n, _ := a.buffered(); n != 0 {
		t.Fatalf("refused reports left %d sends", n)
	}
	if set, _ := a.Keys("ns/gw"); len(set.GetPools()) != 0 {
		t.Fatalf("refused reports left keys: %v", set)
	}
	if got := a.stats.refused.Load(); got != 7 {
		t.Fatalf("%d refusals counted, want 7", got)
	}
}

// A gateway without streams is kept while it holds keys or sends (peers
// relay its other proxies' reports), and forgotten after.
func TestGatewayForgottenWhenIdle(t *testing.T) {
	a, c := newTestAggregator(Options{SendAge: 10 * time.Second})
	mustIngest(t, a, "ns/gw", "a", report("p", time.Minute, use(1, 0, false)))
	mustIngest(t, a, "ns/gw", "a", sendsReport("p", send{1, []uint64{1}}))
	c.t = c.t.Add(sweepEvery + time.Second)
	mustIngest(t, a, "ns/other", "b", sendsReport("p", send{1, []uint64{1}}))
	if _, ok := a.gateways["ns/gw"]; !ok {
		t.Fatal("gateway with live keys forgotten")
	}
	c.t = c.t.Add(2 * time.Minute)
	mustIngest(t, a, "ns/other", "b", sendsReport("p", send{1, []uint64{1}}))
	if _, ok := a.gateways["ns/gw"]; ok {
		t.Fatal("gateway kept after its keys expired and sends aged out")
	}
}

// FuzzIngestSends feeds arbitrary reports to an aggregator with a stream
// reading them: the ring stays within its bounds, and the stream gets
// only what other proxies sent, as valid columns.
func FuzzIngestSends(f *testing.F) {
	for _, r := range []*fleetv1.KeyReport{
		sendsReport("p", send{1, []uint64{1, 2}}, send{2, nil}),
		{Sends: []*fleetv1.PoolSends{{Pool: "p", Endpoints: []uint64{1}, KeyCounts: []uint32{3}, Keys: []uint64{1}}}},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, c := newTestAggregator(Options{MaxSends: 8, MaxSendKeys: 64})
		_, ring, _ := a.subscribe("ns/gw")
		own := &streamState{node: "a", takesSends: true}
		other := &streamState{node: "b", takesSends: true}
		var r fleetv1.KeyReport
		if proto.Unmarshal(data, &r) != nil {
			return
		}
		for range 3 {
			_ = a.Ingest("ns/gw", "a", &r)
			c.t = c.t.Add(time.Second)
			if n, k := a.buffered(); n > 8 || k > 64 {
				t.Fatalf("ring holds %d sends and %d keys, bounds 8 and 64", n, k)
			}
			if msg, _ := a.next("ns/gw", ring, own); len(msg.GetSends()) != 0 {
				t.Fatalf("proxy a got its own sends back: %v", msg.GetSends())
			}
			msg, _ := a.next("ns/gw", ring, other)
			for _, p := range msg.GetSends() {
				if err := p.Check(); err != nil || p.Len() == 0 {
					t.Fatalf("pushed sends of pool %q: %v (%d sends)", p.GetPool(), err, p.Len())
				}
			}
		}
	})
}

// A send's age grows by the time the control plane held it, and its
// prefill and output tokens pass through: the proxy that gets it places it in its own
// clock.
func TestSendRingAges(t *testing.T) {
	r := newSendRing(sendLimits{sends: 10, keys: 100, age: int64(time.Minute)})
	ps := &fleetv1.PoolSends{Pool: "p"}
	ps.Add(fleetv1.Sent{Endpoint: 3, Keys: []uint64{1}, Prefill: 2048, Output: 300, Age: 5 * time.Millisecond})
	t0 := time.Now().UnixNano()
	r.add(t0, "a", []*fleetv1.PoolSends{ps})
	out, _, _, _ := r.read(t0+int64(100*time.Millisecond), 0, "b", 1<<10, nil)
	if len(out) != 1 {
		t.Fatalf("read %d pools, want 1", len(out))
	}
	for snd := range out[0].All() {
		if snd.Prefill != 2048 || snd.Output != 300 || snd.Age != 105*time.Millisecond {
			t.Fatalf("pushed %+v: want 2048 prefill and 300 output tokens, 105ms old", snd)
		}
	}
}

// Prefilled records go through the ring like sends — to the other
// proxies, never back to their own, aged by the time held — beside the
// sends of the same report.
func TestSendRingPrefilled(t *testing.T) {
	r := newSendRing(sendLimits{sends: 10, keys: 100, age: int64(time.Minute)})
	ps := &fleetv1.PoolSends{Pool: "p"}
	ps.Add(fleetv1.Sent{Endpoint: 3, Keys: []uint64{1}, Prefill: 2048})
	ps.AddPrefilled(fleetv1.Prefilled{Endpoint: 3, Tokens: 1500, Age: 5 * time.Millisecond})
	t0 := time.Now().UnixNano()
	if n := r.add(t0, "a", []*fleetv1.PoolSends{ps}); n != 2 {
		t.Fatalf("added %d, want a send and a prefilled record", n)
	}
	if own, _, _, _ := r.read(t0, 0, "a", 1<<10, nil); len(own) != 0 {
		t.Fatalf("its own proxy was pushed %v", own)
	}
	out, _, _, _ := r.read(t0+int64(100*time.Millisecond), 0, "b", 1<<10, nil)
	if len(out) != 1 || out[0].Len() != 1 {
		t.Fatalf("read %v, want pool p with one send", out)
	}
	got := slices.Collect(out[0].AllPrefilled())
	if want := []fleetv1.Prefilled{{Endpoint: 3, Tokens: 1500, Age: 105 * time.Millisecond}}; !slices.Equal(got, want) {
		t.Fatalf("pushed prefilled %+v, want %+v", got, want)
	}
}
