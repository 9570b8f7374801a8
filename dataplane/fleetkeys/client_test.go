package fleetkeys

import (
	"context"
	"log/slog"
	"net"
	"slices"
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

func (p pools) Prefixes() map[string]*picker.PrefixScorer { return p }

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
	ctx, cancel := context.WithCancel(context.Background())
	c := New(Config{Addr: lis.Addr().String(), NodeID: "n1", Gateway: "ns/gw", Pools: pools{"p": s},
		ReportEvery: 20 * time.Millisecond, Grace: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

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
