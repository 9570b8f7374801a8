package kvindex

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/proto/kvevents"
	kvindexv1 "github.com/infergate/infergate/proto/kvindex/v1"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// fakeServer publishes batches as vLLM does, with chosen sequence numbers.
type fakeServer struct {
	pub, router zmq4.Socket
	port        int // PUB port; replay is on the router's
	replayPort  int
	mu          sync.Mutex
	ring        map[uint64][]byte
}

func newFakeServer(t *testing.T, replay bool) *fakeServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeServer{pub: zmq4.NewPub(ctx), ring: map[uint64][]byte{}}
	if err := f.pub.Listen("tcp://127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	f.port = f.pub.Addr().(*net.TCPAddr).Port
	if replay {
		f.router = zmq4.NewRouter(ctx)
		if err := f.router.Listen("tcp://127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		f.replayPort = f.router.Addr().(*net.TCPAddr).Port
		go f.serveReplay()
	}
	t.Cleanup(func() {
		cancel()
		_ = f.pub.Close()
		if f.router != nil {
			_ = f.router.Close()
		}
	})
	return f
}

func (f *fakeServer) serveReplay() {
	for {
		msg, err := f.router.Recv()
		if err != nil {
			return
		}
		start, _ := kvevents.ParseSeq(msg.Frames[2])
		f.mu.Lock()
		var seqs []uint64
		for s := range f.ring {
			if s >= start {
				seqs = append(seqs, s)
			}
		}
		slicesSort(seqs)
		for _, s := range seqs {
			_ = f.router.SendMulti(zmq4.NewMsgFrom(msg.Frames[0], nil, kvevents.AppendSeq(nil, s), f.ring[s]))
		}
		f.mu.Unlock()
		_ = f.router.SendMulti(zmq4.NewMsgFrom(msg.Frames[0], nil, kvevents.AppendSeq(nil, kvevents.EndOfReplay), nil))
	}
}

// publish sends a batch with seq; buffered keeps it for replay.
func (f *fakeServer) publish(t *testing.T, seq uint64, buffered, sent bool, evs ...kvevents.Event) {
	t.Helper()
	p := kvevents.AppendBatch(nil, &kvevents.Batch{TS: 1, Events: evs})
	f.mu.Lock()
	if buffered {
		f.ring[seq] = p
	}
	f.mu.Unlock()
	if sent {
		if err := f.pub.SendMulti(zmq4.NewMsgFrom([]byte("kv"), kvevents.AppendSeq(nil, seq), p)); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fakeServer) waitSubscribed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.pub.(zmq4.Topics).Topics()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no subscriber")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func slicesSort(s []uint64) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

// proxyView applies a Watch stream the way a proxy does.
type proxyView struct {
	mu    sync.Mutex
	pools map[string]map[string]map[uint64]bool
}

func (v *proxyView) apply(u *kvindexv1.IndexUpdate) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, p := range u.GetRemovedPools() {
		delete(v.pools, p)
	}
	for _, p := range u.GetPools() {
		if v.pools[p.GetPool()] == nil {
			v.pools[p.GetPool()] = map[string]map[uint64]bool{}
		}
		servers := v.pools[p.GetPool()]
		for _, ep := range p.GetRemovedServers() {
			delete(servers, ep)
		}
		for _, s := range p.GetServers() {
			if s.GetReplace() || servers[s.GetEndpoint()] == nil {
				servers[s.GetEndpoint()] = map[uint64]bool{}
			}
			for _, k := range s.GetAdded() {
				servers[s.GetEndpoint()][k] = true
			}
			for _, k := range s.GetRemoved() {
				delete(servers[s.GetEndpoint()], k)
			}
		}
	}
}

func (v *proxyView) has(pool, ep string, k uint64) (bool, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.pools[pool][ep]
	return s[k], ok
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func poolSet(t *testing.T, gw, pool string, kv *snapshotv1.KVEvents, eps ...*snapshotv1.Endpoint) map[string]*snapshot.Set {
	t.Helper()
	set, err := snapshot.NewSet(gw, []snapshotv1.Named{
		&snapshotv1.Backend{Name: pool, Kind: snapshotv1.Backend_INFERENCE_POOL, Endpoints: pool, Picker: &snapshotv1.PickerProfile{KvEvents: kv}},
		&snapshotv1.Endpoints{Name: pool, Endpoints: eps},
	})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*snapshot.Set{gw: set}
}

func TestIndexEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	x := New(ctx, Options{PushEvery: time.Millisecond, BackoffMin: 20 * time.Millisecond}, slog.New(slog.DiscardHandler))
	withReplay := newFakeServer(t, true)
	noReplay := newFakeServer(t, false)
	const gw, pool = "ns/gw", "ns/gw/inferencepool/ns/p"
	// Two servers on one IP, told apart by their serving ports; each pod
	// annotation names its event ports.
	x.Update(poolSet(t, gw, pool, &snapshotv1.KVEvents{Topic: "kv"},
		&snapshotv1.Endpoint{Address: "127.0.0.1", Port: 8001, Pod: "ns/a", KvEventsPort: uint32(withReplay.port), KvReplayPort: uint32(withReplay.replayPort)},
		&snapshotv1.Endpoint{Address: "127.0.0.1", Port: 8002, Pod: "ns/b", KvEventsPort: uint32(noReplay.port)},
	))
	withReplay.waitSubscribed(t)
	noReplay.waitSubscribed(t)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	NewService(x, nil).Register(g)
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := kvindexv1.NewKVIndexClient(conn).Watch(ctx, &kvindexv1.WatchRequest{NodeId: "p1", Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	view := &proxyView{pools: map[string]map[string]map[uint64]bool{}}
	go func() {
		for {
			u, err := stream.Recv()
			if err != nil {
				return
			}
			view.apply(u)
		}
	}()
	a, b := "127.0.0.1:8001", "127.0.0.1:8002"
	eventually(t, "both servers announced (empty)", func() bool {
		_, okA := view.has(pool, a, 0)
		_, okB := view.has(pool, b, 0)
		return okA && okB
	})

	toks := []uint32{1, 2, 3, 4}
	k := kvevents.AppendBlockKeys(nil, kvevents.RootKey(""), toks, 2)
	withReplay.publish(t, 0, true, true, stored(0, false, toks, 100, 101))
	eventually(t, "A's blocks", func() bool { ok, _ := view.has(pool, a, k[1]); return ok })

	// Gap on A: seq 1 is never published live but buffered; seq 2 comes.
	withReplay.publish(t, 1, true, false, kvevents.Event{Kind: kvevents.BlockRemoved, BlockHashes: []uint64{101}})
	withReplay.publish(t, 2, true, true, stored(0, false, []uint32{9, 9}, 200))
	k9 := kvevents.AppendBlockKeys(nil, kvevents.RootKey(""), []uint32{9, 9}, 2)[0]
	eventually(t, "the replayed removal and the new block", func() bool {
		gone, _ := view.has(pool, a, k[1])
		nine, _ := view.has(pool, a, k9)
		return !gone && nine
	})
	st := x.Stats(gw)[0].Servers[0]
	if st.Gaps != 1 || st.Replays != 1 || st.Resyncs != 0 || st.LastSeq != 2 {
		t.Fatalf("A stats %+v", st)
	}

	// B: blocks, then a gap it cannot replay: B's blocks are dropped, and
	// rebuilt from what follows.
	noReplay.publish(t, 0, false, true, stored(0, false, toks, 300, 301))
	eventually(t, "B's blocks", func() bool { ok, _ := view.has(pool, b, k[0]); return ok })
	noReplay.publish(t, 5, false, true, stored(0, false, []uint32{9, 9}, 400))
	eventually(t, "B resynced", func() bool {
		old, _ := view.has(pool, b, k[0])
		nine, _ := view.has(pool, b, k9)
		return !old && nine
	})
	// A malformed batch drops B's blocks too.
	if err := noReplay.pub.SendMulti(zmq4.NewMsgFrom([]byte("kv"), kvevents.AppendSeq(nil, 6), []byte{0xc1})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B dropped after a malformed batch", func() bool { nine, _ := view.has(pool, b, k9); return !nine })
	// B's publisher restarts: sequence numbers start over.
	noReplay.publish(t, 0, false, true, stored(0, false, toks, 300, 301))
	eventually(t, "B after restart", func() bool { ok, _ := view.has(pool, b, k[1]); return ok })
	stB := x.Stats(gw)[0].Servers[1]
	if stB.Gaps != 1 || stB.Resyncs != 3 || stB.Malformed != 1 {
		t.Fatalf("B stats %+v", stB)
	}

	// B leaves the pool: its blocks leave every proxy.
	x.Update(poolSet(t, gw, pool, &snapshotv1.KVEvents{Topic: "kv"},
		&snapshotv1.Endpoint{Address: "127.0.0.1", Port: 8001, Pod: "ns/a", KvEventsPort: uint32(withReplay.port), KvReplayPort: uint32(withReplay.replayPort)}))
	eventually(t, "B removed", func() bool { _, ok := view.has(pool, b, 0); return !ok })
	// Events turned off: the pool goes.
	x.Update(poolSet(t, gw, pool, nil, &snapshotv1.Endpoint{Address: "127.0.0.1", Port: 8001}))
	eventually(t, "pool removed", func() bool {
		view.mu.Lock()
		defer view.mu.Unlock()
		return view.pools[pool] == nil
	})
}

func TestSpecs(t *testing.T) {
	eps := []*snapshotv1.Endpoint{
		{Address: "10.0.0.2", Port: 8001}, {Address: "10.0.0.2", Port: 8000},
		{Address: "10.0.0.3", Port: 8000, KvEventsPort: 6000, KvReplayPort: 6001},
	}
	got := Specs(&snapshotv1.KVEvents{ReplayPort: 5558}, eps)
	want := []serverSpec{
		{endpoint: "10.0.0.2:8000", events: "tcp://10.0.0.2:5557", replay: "tcp://10.0.0.2:5558"},
		{endpoint: "10.0.0.2:8001", events: "tcp://10.0.0.2:5558", replay: "tcp://10.0.0.2:5559"},
		{endpoint: "10.0.0.3:8000", events: "tcp://10.0.0.3:6000", replay: "tcp://10.0.0.3:6001"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("specs\n%v\nwant\n%v", got, want)
	}
}

// A publisher that restarts while the subscription is away and is past
// the old sequence numbers when it is back: the old blocks must go, and
// the new life's history comes from its replay buffer.
func TestIndexRestartWhileAway(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	x := New(ctx, Options{PushEvery: time.Millisecond, BackoffMin: 20 * time.Millisecond}, slog.New(slog.DiscardHandler))
	old := newFakeServer(t, true)
	port, replayPort := old.port, old.replayPort
	const gw, pool = "ns/gw", "ns/gw/inferencepool/ns/p"
	x.Update(poolSet(t, gw, pool, &snapshotv1.KVEvents{Topic: "kv"},
		&snapshotv1.Endpoint{Address: "127.0.0.1", Port: 8001, Pod: "ns/a", KvEventsPort: uint32(port), KvReplayPort: uint32(replayPort)}))
	old.waitSubscribed(t)
	old.publish(t, 0, true, true, stored(0, false, []uint32{1, 2}, 100))
	blocks := func() int64 { return x.Stats(gw)[0].Servers[0].Blocks }
	eventually(t, "old life's block", func() bool { return blocks() == 1 })
	_ = old.pub.Close()
	_ = old.router.Close()

	// The new life listens on the same ports with three batches buffered.
	pctx, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	nu := &fakeServer{pub: zmq4.NewPub(pctx), router: zmq4.NewRouter(pctx), ring: map[uint64][]byte{}}
	defer nu.pub.Close()
	defer nu.router.Close()
	deadline := time.Now().Add(5 * time.Second)
	for nu.pub.Listen("tcp://127.0.0.1:"+strconv.Itoa(port)) != nil || nu.router.Listen("tcp://127.0.0.1:"+strconv.Itoa(replayPort)) != nil {
		if time.Now().After(deadline) {
			t.Fatal("ports not free again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	go nu.serveReplay()
	nu.publish(t, 0, true, false, stored(0, false, []uint32{5, 6}, 500))
	nu.publish(t, 1, true, false, stored(500, true, []uint32{7, 8}, 501))
	nu.waitSubscribed(t)
	nu.publish(t, 2, true, true, kvevents.Event{Kind: kvevents.BlockRemoved, BlockHashes: []uint64{501}})
	eventually(t, "new life's history only", func() bool {
		st := x.Stats(gw)[0].Servers[0]
		return st.LastSeq == 2 && st.Blocks == 1 && st.Resyncs == 1
	})
	k := kvevents.AppendBlockKeys(nil, kvevents.RootKey(""), []uint32{5, 6}, 2)[0]
	x.mu.Lock()
	s := x.pools[gw][pool].servers[0]
	x.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.idx.refs[k]; !ok || len(s.idx.refs) != 1 {
		t.Fatalf("index after the restart: %v", s.idx.refs)
	}
}
