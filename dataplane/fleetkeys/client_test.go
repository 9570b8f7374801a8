package fleetkeys

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/infergate/infergate/dataplane/picker"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// fakeCP records reports and answers each stream with one set.
type fakeCP struct {
	fleetv1.UnimplementedPrefixKeysServer
	reports chan *fleetv1.KeyReport
	set     *fleetv1.FleetKeys
}

func (f *fakeCP) Exchange(st fleetv1.PrefixKeys_ExchangeServer) error {
	if err := st.Send(f.set); err != nil {
		return err
	}
	for {
		r, err := st.Recv()
		if err != nil {
			return err
		}
		select {
		case f.reports <- r:
		default:
		}
	}
}

type pools map[string]*picker.PrefixScorer

func (p pools) Fleets() map[string]picker.Fleet {
	out := make(map[string]picker.Fleet, len(p))
	for k, v := range p {
		out[k] = v
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run runs c until the test ends.
func run(t *testing.T, c *Client) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// The client names itself in its first report, hands the pool's scorer
// the set the control plane sends, and once the control plane is gone
// for Grace, takes it away again (the scorer plans over its own keys).
func TestClientAppliesAndFallsBack(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &fakeCP{reports: make(chan *fleetv1.KeyReport, 16),
		set: &fleetv1.FleetKeys{Pools: []*fleetv1.PoolSet{{Pool: "p", Hot: []uint64{1, 2}, Once: []uint64{3}}}}}
	g := grpc.NewServer()
	fleetv1.RegisterPrefixKeysServer(g, cp)
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()

	s := picker.NewPrefixScorer(0)
	run(t, New(Config{Addr: lis.Addr().String(), NodeID: "n1", Gateway: "ns/gw", Pools: pools{"p": s},
		ReportEvery: 20 * time.Millisecond, Grace: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}))

	first := <-cp.reports
	if first.GetNodeId() != "n1" || first.GetGateway() != "ns/gw" {
		t.Fatalf("first report names %q of %q, want n1 of ns/gw", first.GetNodeId(), first.GetGateway())
	}
	waitFor(t, "the fleet keys", func() bool {
		f := s.FleetKeysInUse()
		return f != nil && slices.Equal(f.Hot, []uint64{1, 2}) && slices.Equal(f.Once, []uint64{3})
	})
	g.Stop()
	lost := time.Now()
	waitFor(t, "the fallback to own keys", func() bool { return s.FleetKeysInUse() == nil })
	if d := time.Since(lost); d < 200*time.Millisecond {
		t.Fatalf("fleet keys dropped %v after the stream ended, before the 300 ms grace", d)
	}
}

// TestCapKeys: a pool's report never exceeds what the control plane
// accepts; hot keys go first, then the most recently used.
func TestCapKeys(t *testing.T) {
	n := fleetv1.MaxKeysPerPool + 100
	keys := make([]picker.KeyUse, 0, n)
	for i := range n {
		keys = append(keys, picker.KeyUse{Key: uint64(i), Last: int64(i), Hot: i%1000 == 0})
	}
	got := capKeys(keys)
	if len(got) != fleetv1.MaxKeysPerPool {
		t.Fatalf("%d keys kept, want %d", len(got), fleetv1.MaxKeysPerPool)
	}
	for i, k := range got[:5] {
		if !k.Hot {
			t.Fatalf("key %d not hot: %+v", i, k)
		}
	}
	// The 100 oldest once keys (Last 1…100, but not the hot 0) are cut.
	for _, k := range got {
		if !k.Hot && k.Last <= 100 {
			t.Fatalf("old key %+v kept over newer ones", k)
		}
	}
	if err := fleetv1.CheckReport(&fleetv1.KeyReport{Pools: []*fleetv1.PoolKeys{{Pool: "p", Keys: make([]*fleetv1.KeyUse, len(got))}}},
		fleetv1.MaxKeysPerPool); err != nil {
		t.Fatalf("capped report refused: %v", err)
	}
	short := []picker.KeyUse{{Key: 1}}
	if got := capKeys(short); len(got) != 1 {
		t.Fatalf("a short list was changed: %v", got)
	}
}

// Problems go in a stream's first report (even none), when they change,
// and again every fleetv1.ProblemsRefresh while they stand; not otherwise.
func TestProblemReportsDue(t *testing.T) {
	var p problemReports
	t0 := time.Unix(1000, 0)
	bad := []*fleetv1.PoolProblem{fleetv1.NewProblem("p", fleetv1.ReasonTokenizerUnusable, "missing")}
	steps := []struct {
		cur   []*fleetv1.PoolProblem
		first bool
		at    time.Duration
		want  bool
	}{
		{nil, true, 0, true},                                        // first report: none
		{nil, false, time.Second, false},                            // unchanged
		{bad, false, 2 * time.Second, true},                         // a problem
		{bad, false, 3 * time.Second, false},                        // the same
		{bad, false, 2*time.Second + fleetv1.ProblemsRefresh, true}, // refreshed
		{nil, false, 13 * time.Second, true},                        // fixed
		{nil, true, 14 * time.Second, true},                         // a new stream
	}
	for i, s := range steps {
		got := p.due(s.cur, s.first, t0.Add(s.at))
		if (got != nil) != s.want {
			t.Fatalf("step %d: report %v, want a report %v", i, got, s.want)
		}
		if got != nil && len(got.GetProblems()) != len(s.cur) {
			t.Fatalf("step %d: reported %v, want %v", i, got, s.cur)
		}
	}
}

// The client reports the pools' problems on the stream: none in its first
// report, then each change.
func TestClientReportsProblems(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &fakeCP{reports: make(chan *fleetv1.KeyReport, 64), set: &fleetv1.FleetKeys{}}
	g := grpc.NewServer()
	fleetv1.RegisterPrefixKeysServer(g, cp)
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	var cur atomic.Pointer[[]*fleetv1.PoolProblem]
	cur.Store(&[]*fleetv1.PoolProblem{})
	run(t, New(Config{Addr: lis.Addr().String(), NodeID: "n1", Gateway: "ns/gw", Pools: pools{},
		Problems:    func() []*fleetv1.PoolProblem { return *cur.Load() },
		ReportEvery: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}))
	if first := <-cp.reports; first.GetNodeId() != "n1" || first.GetProblems() == nil || len(first.GetProblems().GetProblems()) != 0 {
		t.Fatalf("first report %v: want it to say there are no problems", first)
	}
	bad := fleetv1.NewProblem("p", fleetv1.ReasonTokenizerUnusable, "missing")
	cur.Store(&[]*fleetv1.PoolProblem{bad})
	for r := range cp.reports {
		if ps := r.GetProblems(); ps != nil {
			if len(ps.GetProblems()) != 1 || ps.GetProblems()[0].GetMessage() != "missing" {
				t.Fatalf("report %v: want the pool's problem", r)
			}
			break
		}
	}
}
