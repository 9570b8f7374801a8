package fleetkeys

import (
	"context"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/infergate/infergate/dataplane/picker"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// fakeFleet is a pool picker's fleet side with scripted sends.
type fakeFleet struct {
	mu     sync.Mutex
	sends  []picker.Send // send i has sequence number i+1
	merged []picker.Send
	keys   *picker.FleetKeys
	// loads are its own scrapes, adopted the others' it was handed.
	loads   []picker.Load
	adopted []picker.Load
}

func (f *fakeFleet) KeysUsedSince(int64, []picker.KeyUse) []picker.KeyUse { return nil }
func (f *fakeFleet) KeyWindow() time.Duration                             { return time.Minute }
func (f *fakeFleet) SetFleetKeys(k *picker.FleetKeys) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = k
}
func (f *fakeFleet) FleetKeysInUse() *picker.FleetKeys {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys
}
func (f *fakeFleet) SendsSince(cursor uint64, out []picker.Send) ([]picker.Send, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(out, f.sends[min(cursor, uint64(len(f.sends))):]...), uint64(len(f.sends))
}
func (f *fakeFleet) MergeSends(s []picker.Send) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range s {
		x.Keys = slices.Clone(x.Keys)
		f.merged = append(f.merged, x)
	}
}
func (f *fakeFleet) Loads(out []picker.Load) []picker.Load {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(out, f.loads...)
}
func (f *fakeFleet) MergeLoads(ls []picker.Load) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adopted = append(f.adopted, ls...)
	return len(ls)
}
func (f *fakeFleet) send(ep uint64, keys ...uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sends = append(f.sends, picker.Send{Endpoint: ep, Keys: keys})
}
func (f *fakeFleet) mergedEndpoints() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint64
	for _, s := range f.merged {
		out = append(out, s.Endpoint)
	}
	return out
}

type fleets struct {
	mu sync.Mutex
	m  map[string]picker.Fleet
}

func (p *fleets) Fleets() map[string]picker.Fleet {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]picker.Fleet, len(p.m))
	for k, v := range p.m {
		out[k] = v
	}
	return out
}

func (p *fleets) set(name string, f picker.Fleet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[name] = f
}

// sendsCP records every report and pushes what the test hands it.
type sendsCP struct {
	fleetv1.UnimplementedPrefixKeysServer
	reports chan *fleetv1.KeyReport
	push    chan *fleetv1.FleetKeys
}

func (f *sendsCP) Exchange(st fleetv1.PrefixKeys_ExchangeServer) error {
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			f.reports <- r
		}
	}()
	for {
		select {
		case err := <-errc:
			return err
		case m := <-f.push:
			if err := st.Send(m); err != nil {
				return err
			}
		}
	}
}

// reported collects the sends of reports until n arrived.
func reported(t *testing.T, cp *sendsCP, n int) (sends []uint64, firsts []*fleetv1.KeyReport) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for len(sends) < n {
		select {
		case r := <-cp.reports:
			if r.GetNodeId() != "" {
				firsts = append(firsts, r)
			}
			for _, p := range r.GetSends() {
				for snd := range p.All() {
					sends = append(sends, snd.Endpoint)
				}
			}
		case <-deadline:
			t.Fatalf("reported %v, want %d sends", sends, n)
		}
	}
	return sends, firsts
}

// The client reports each send its pickers made once, in order, across
// reconnects; asks to catch up on its first stream only; merges the sends
// pushed to it into the named pool's picker; and keeps its key sets when
// a push leaves them unchanged.
func TestClientSends(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	cp := &sendsCP{reports: make(chan *fleetv1.KeyReport, 64), push: make(chan *fleetv1.FleetKeys, 4)}
	g := grpc.NewServer()
	fleetv1.RegisterPrefixKeysServer(g, cp)
	go func() { _ = g.Serve(lis) }()

	p := &fakeFleet{}
	pools := &fleets{m: map[string]picker.Fleet{"p": p}}
	ctx, cancel := context.WithCancel(context.Background())
	c := New(Config{Addr: addr, NodeID: "n1", Gateway: "ns/gw", Pools: pools, ReportEvery: 20 * time.Millisecond,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		g.Stop()
	}()

	p.send(1, 10, 11)
	p.send(2, 20)
	got, firsts := reported(t, cp, 2)
	if !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("reported %v, want [1 2]", got)
	}
	if len(firsts) != 1 || !firsts[0].GetTakesSends() || !firsts[0].GetCatchUp() {
		t.Fatalf("first report %v: want takes_sends and catch_up", firsts)
	}

	cp.push <- &fleetv1.FleetKeys{Pools: []*fleetv1.PoolSet{{Pool: "p", Hot: []uint64{7}}}}
	other := &fleetv1.PoolSends{Pool: "p"}
	other.Add(fleetv1.Sent{Endpoint: 5, Keys: []uint64{50, 51}, Prefill: 300, Output: 40, Age: time.Minute})
	other.Add(fleetv1.Sent{Endpoint: 6, Keys: []uint64{60}})
	gone := &fleetv1.PoolSends{Pool: "gone"}
	gone.Add(fleetv1.Sent{Endpoint: 9, Keys: []uint64{90}})
	before := time.Now()
	cp.push <- &fleetv1.FleetKeys{KeysUnchanged: true, Sends: []*fleetv1.PoolSends{other, gone}}
	waitFor(t, "the pushed sends", func() bool { return len(p.mergedEndpoints()) == 2 })
	if got := p.mergedEndpoints(); !slices.Equal(got, []uint64{5, 6}) {
		t.Fatalf("merged %v, want [5 6]", got)
	}
	// A pushed send's age places it in the proxy's clock.
	p.mu.Lock()
	m := p.merged[0]
	p.mu.Unlock()
	if at := time.Unix(0, m.At); m.Prefill != 300 || m.Output != 40 || at.Before(before.Add(-time.Minute)) || at.After(time.Now().Add(-time.Minute)) {
		t.Fatalf("merged send at %v with %v prefill and %v output tokens: want 300 and 40 a minute before the push (%v)", at, m.Prefill, m.Output, before)
	}
	if k := p.FleetKeysInUse(); k == nil || !slices.Equal(k.Hot, []uint64{7}) {
		t.Fatalf("keys after a push with keys_unchanged: %v, want hot [7] kept", k)
	}
	if st := State(pools, c)["p"].Sends; st.Reported != 2 || st.Merged != 2 {
		t.Fatalf("admin counts %+v, want 2 reported and 2 merged", st)
	}

	// The control plane goes away; sends made meanwhile go out on the
	// next stream, which does not ask to catch up.
	g.Stop()
	p.send(3, 30)
	lis, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	g = grpc.NewServer()
	fleetv1.RegisterPrefixKeysServer(g, cp)
	go func() { _ = g.Serve(lis) }()
	got, firsts = reported(t, cp, 1)
	if !slices.Equal(got, []uint64{3}) {
		t.Fatalf("after reconnecting reported %v, want only the new send [3]", got)
	}
	if len(firsts) != 1 || !firsts[0].GetTakesSends() || firsts[0].GetCatchUp() {
		t.Fatalf("first report of the second stream %v: want takes_sends without catch_up", firsts)
	}

	// A new picker for the pool (its profile changed) starts over.
	q := &fakeFleet{}
	q.send(4, 40)
	pools.set("p", q)
	if got, _ := reported(t, cp, 1); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("after a new picker reported %v, want [4]", got)
	}
}

// A report carries at most the shared limits, keeping the newest sends.
func TestClientSendsWithinLimits(t *testing.T) {
	c := New(Config{NodeID: "n", Gateway: "ns/gw", Logger: slog.New(slog.DiscardHandler)})
	p := &fakeFleet{}
	for i := range fleetv1.MaxSendsPerReport + 10 {
		p.send(uint64(i), 1)
	}
	long := make([]uint64, fleetv1.MaxKeysPerSend+5)
	for i := range long {
		long[i] = uint64(i)
	}
	q := &fakeFleet{}
	q.send(1, long...)
	q.send(2) // no keys: nothing to tell
	_, out := c.sendsSince(map[string]picker.Fleet{"p": p}, nil, 0)
	if len(out) != 1 || out[0].Len() != fleetv1.MaxSendsPerReport || out[0].GetEndpoints()[0] != 10 {
		t.Fatalf("report of %d pools, first endpoint %d: want %d sends from the 11th", len(out), out[0].GetEndpoints()[0], fleetv1.MaxSendsPerReport)
	}
	_, out = c.sendsSince(map[string]picker.Fleet{"q": q}, nil, 0)
	if err := out[0].Check(); err != nil || out[0].Len() != 1 || out[0].GetKeys()[0] != 5 {
		t.Fatalf("a chain beyond MaxKeysPerSend: %v, %d sends, first key %d; want the deepest keys", err, out[0].Len(), out[0].GetKeys()[0])
	}
}

// A report carries each send's prefill and expected output as whole
// tokens within the exchange's bounds, and its age from the picker's
// clock.
func TestClientSendsTokensAndAge(t *testing.T) {
	c := New(Config{NodeID: "n", Gateway: "ns/gw", Logger: slog.New(slog.DiscardHandler)})
	p := &fakeFleet{sends: []picker.Send{
		{Endpoint: 1, Keys: []uint64{1}, Prefill: 900.7, Output: 120.2, At: 1_000},
		{Endpoint: 2, Keys: []uint64{2}, Prefill: -3, Output: math.NaN(), At: 2_000},
		{Endpoint: 3, Keys: []uint64{3}, Prefill: math.Inf(1), Output: 1e12, At: 3_000},
	}}
	_, out := c.sendsSince(map[string]picker.Fleet{"p": p}, nil, int64(5*time.Millisecond)+1_000)
	if len(out) != 1 || out[0].Check() != nil {
		t.Fatalf("report %v", out)
	}
	want := []fleetv1.Sent{
		{Endpoint: 1, Prefill: 900, Output: 120, Age: 5 * time.Millisecond},
		{Endpoint: 2, Prefill: 0, Output: 0, Age: 5*time.Millisecond - 1_000},
		{Endpoint: 3, Prefill: fleetv1.MaxPrefillTokens, Output: fleetv1.MaxOutputTokens, Age: 5*time.Millisecond - 2_000},
	}
	i := 0
	for snd := range out[0].All() {
		w := want[i]
		if snd.Endpoint != w.Endpoint || snd.Prefill != w.Prefill || snd.Output != w.Output || snd.Age.Truncate(time.Millisecond) != w.Age.Truncate(time.Millisecond) {
			t.Errorf("send %d reported as %+v, want %+v", i, snd, w)
		}
		i++
	}
}

// keyedFleet is a fakeFleet that has used one affinity key just now, at
// every scan.
type keyedFleet struct{ fakeFleet }

func (f *keyedFleet) KeysUsedSince(int64, []picker.KeyUse) []picker.KeyUse {
	return []picker.KeyUse{{Key: 7, Last: time.Now().UnixNano()}}
}

// Sends go out every ReportEvery, keys only every KeysEvery: a proxy that
// sends and uses keys all the time reports its keys a few times while its
// sends go out in many reports.
func TestClientReportsKeysLessOften(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &sendsCP{reports: make(chan *fleetv1.KeyReport, 1024), push: make(chan *fleetv1.FleetKeys, 4)}
	g := grpc.NewServer()
	fleetv1.RegisterPrefixKeysServer(g, cp)
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	p := &keyedFleet{}
	const keysEvery = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	c := New(Config{Addr: lis.Addr().String(), NodeID: "n1", Gateway: "ns/gw", Pools: &fleets{m: map[string]picker.Fleet{"p": p}},
		ReportEvery: 5 * time.Millisecond, KeysEvery: keysEvery, Logger: slog.New(slog.DiscardHandler)})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop := time.After(500 * time.Millisecond)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	withKeys, withSends := 0, 0
	start := time.Now()
loop:
	for {
		select {
		case <-tick.C:
			p.send(1, 10)
		case r := <-cp.reports:
			if len(r.GetPools()) > 0 {
				withKeys++
			}
			if len(r.GetSends()) > 0 {
				withSends++
			}
		case <-stop:
			break loop
		}
	}
	cancel()
	<-done
	if limit := int(time.Since(start)/keysEvery) + 2; withKeys == 0 || withKeys > limit {
		t.Fatalf("%d reports with keys in %v: want 1 to %d at one per %v", withKeys, time.Since(start), limit, keysEvery)
	}
	if withSends <= withKeys {
		t.Fatalf("%d reports with sends, %d with keys: sends not reported more often", withSends, withKeys)
	}
}

// A picker's prefilled records go into the report's prefilled columns
// (tokens whole and bounded, aged), not as sends; merged from a push they
// reach the picker as Sends with Prefilled set, and only sends count as
// merged.
func TestClientPrefilled(t *testing.T) {
	c := New(Config{NodeID: "n", Gateway: "ns/gw", Logger: slog.New(slog.DiscardHandler)})
	p := &fakeFleet{sends: []picker.Send{
		{Endpoint: 1, Keys: []uint64{1}, Prefill: 900, At: 1_000},
		{Endpoint: 1, Prefill: 700.6, At: 2_000, Prefilled: true},
		{Endpoint: 2, Prefill: math.NaN(), At: 2_000, Prefilled: true},
	}}
	now := int64(5*time.Millisecond) + 2_000
	_, out := c.sendsSince(map[string]picker.Fleet{"p": p}, nil, now)
	if len(out) != 1 || out[0].Check() != nil || out[0].Len() != 1 {
		t.Fatalf("report %v, want one send in pool p", out)
	}
	got := slices.Collect(out[0].AllPrefilled())
	want := []fleetv1.Prefilled{{Endpoint: 1, Tokens: 700, Age: 5 * time.Millisecond}, {Endpoint: 2, Tokens: 0, Age: 5 * time.Millisecond}}
	if !slices.Equal(got, want) {
		t.Fatalf("prefilled reported as %+v, want %+v", got, want)
	}
	q := &fakeFleet{}
	c = New(Config{NodeID: "m", Gateway: "ns/gw", Pools: &fleets{m: map[string]picker.Fleet{"p": q}}, Logger: slog.New(slog.DiscardHandler)})
	c.merge(out, nil)
	after := time.Now().UnixNano() // the record is 5 ms older than its merge
	if len(q.merged) != 3 || q.merged[0].Prefilled || !q.merged[1].Prefilled || q.merged[1].Prefill != 700 ||
		q.merged[1].At > after-int64(5*time.Millisecond) || q.merged[1].Endpoint != 1 || len(q.merged[1].Keys) != 0 {
		t.Fatalf("merged %+v, want the send and then two prefilled records", q.merged)
	}
	if n := c.counts.snapshot()["p"].sends.Merged; n != 1 {
		t.Fatalf("%d sends counted as merged, want 1", n)
	}
}
