package fleet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// replica is one control plane's fleet service on loopback.
type replica struct {
	agg   *Aggregator
	peers *Peers
	addr  string
	api   fleetv1.PrefixKeysClient
}

// startReplicas runs n replicas; each relays to every address in all
// (itself included, as a Service's endpoints would list it).
func startReplicas(t *testing.T, n int, authorize func(context.Context) error) []*replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rs := make([]*replica, n)
	var addrs []string
	for i := range rs {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		agg := NewAggregator(Options{PushEvery: 10 * time.Millisecond})
		peers := NewPeers(ctx, agg, PeerOptions{Authorize: authorize, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Logger: quiet()})
		g := grpc.NewServer()
		NewService(agg, quiet(), nil).WithPeers(peers).Register(g)
		go func() { _ = g.Serve(lis) }()
		t.Cleanup(g.Stop)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		rs[i] = &replica{agg: agg, peers: peers, addr: lis.Addr().String(), api: fleetv1.NewPrefixKeysClient(conn)}
		addrs = append(addrs, rs[i].addr)
	}
	for _, r := range rs {
		r.peers.Set(addrs)
	}
	return rs
}

// openTaking opens a stream of a proxy that takes sends.
func openTaking(t *testing.T, c fleetv1.PrefixKeysClient, node, gw string) fleetv1.PrefixKeys_ExchangeClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := c.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&fleetv1.KeyReport{NodeId: node, Gateway: gw, TakesSends: true}); err != nil {
		t.Fatal(err)
	}
	return st
}

// recvUntil reads pushes until have holds, collecting their sends; it
// fails after a timeout.
func recvUntil(t *testing.T, st fleetv1.PrefixKeys_ExchangeClient, got *[]string, keys *[]uint64, have func() bool) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for !have() {
			msg, err := st.Recv()
			if err != nil {
				done <- err
				return
			}
			*got = append(*got, flatten(msg.GetSends())...)
			for _, p := range msg.GetPools() {
				*keys = append(*keys, p.GetOnce()...)
				*keys = append(*keys, p.GetHot()...)
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out; got sends %v keys %v", *got, *keys)
	}
}

// Proxies connected to different replicas get each other's keys and
// sends, each send once, and never their own; with three replicas in a
// full mesh, every replica receives every report exactly once (no loop,
// no duplicate), and no replica relays to itself.
func TestRelayAcrossReplicas(t *testing.T) {
	rs := startReplicas(t, 3, nil)
	a := openTaking(t, rs[0].api, "a", "ns/gw")
	b := openTaking(t, rs[1].api, "b", "ns/gw")
	c := openTaking(t, rs[2].api, "c", "ns/gw")
	// Wait for the mesh: 2 connected peers each, self dropped; and for
	// each replica to have subscribed its proxy's stream (a stream reads
	// only sends that arrive after it subscribed: on a loaded machine a
	// relayed send could otherwise come first).
	waitFor(t, func() error {
		for i, r := range rs {
			if up, down := r.peers.connected(); up != 2 || down != 0 {
				return fmt.Errorf("replica %d: %d peers up, %d down (addrs %v)", i, up, down, r.peers.Addrs())
			}
			if n := r.agg.streams("ns/gw"); n != 1 {
				return fmt.Errorf("replica %d: %d streams subscribed", i, n)
			}
		}
		return nil
	})
	for i, st := range []fleetv1.PrefixKeys_ExchangeClient{a, b, c} {
		r := sendsReport("p", send{uint64(i + 1), []uint64{uint64(100 + i)}})
		r.Pools = []*fleetv1.PoolKeys{{Pool: "p", Keys: []*fleetv1.KeyUse{use(uint64(i+1), 0, false)}}}
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	for i, st := range []fleetv1.PrefixKeys_ExchangeClient{a, b, c} {
		var got []string
		var keys []uint64
		recvUntil(t, st, &got, &keys, func() bool { return len(got) >= 2 && len(keys) >= 3 })
		slices.Sort(got)
		var want []string
		for j := range 3 {
			if j != i {
				want = append(want, fmt.Sprintf("p:%d:%d", j+1, 100+j))
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("proxy %d got sends %v, want the other two's %v", i, got, want)
		}
	}
	time.Sleep(100 * time.Millisecond) // any duplicate would have arrived
	for i, r := range rs {
		if n := r.agg.stats.sendsIn.Load(); n != 3 {
			t.Errorf("replica %d received %d sends, want exactly 3 (one per proxy)", i, n)
		}
		if n := r.agg.stats.relayedIn.Load(); n != 2 {
			t.Errorf("replica %d got %d relayed reports, want 2", i, n)
		}
	}
}

// A peer is admitted only as Authorize says: a refused relay ingests
// nothing.
func TestRelayAuthorized(t *testing.T) {
	deny := func(context.Context) error { return status.Error(codes.PermissionDenied, "not a replica") }
	rs := startReplicas(t, 2, deny)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := rs[0].api.Relay(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Send(&fleetv1.RelayBatch{Replica: "intruder", Reports: []*fleetv1.KeyReport{
		{NodeId: "x", Gateway: "ns/gw", Sends: sendsReport("p", send{1, []uint64{1}}).GetSends()},
	}})
	if _, err := st.CloseAndRecv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("relay: %v, want PermissionDenied", err)
	}
	if n := rs[0].agg.stats.sendsIn.Load(); n != 0 {
		t.Fatalf("refused relay ingested %d sends", n)
	}
}

func waitFor(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
