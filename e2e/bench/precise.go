package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/infergate/infergate/controlplane/kvindex"
	"github.com/infergate/infergate/controlplane/snapshot"
	dpkv "github.com/infergate/infergate/dataplane/kvindex"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/e2e/modelsim"
	"github.com/infergate/infergate/proto/kvevents"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Precise prefix matching in the benchmark: the cell's replicas publish
// KV-cache events as vLLM does (ZeroMQ PUB + replay, modelsim's 4-byte
// tokenizer), the control plane's KV index subscribes to each replica once
// and streams the pool's block index over loopback gRPC, and every proxy's
// default picker gets it as its prefix source through the production
// client (dataplane/kvindex): the events travel the production path.

func registerPrecise(r *Registry) {
	for _, n := range []int{1, 4} {
		p := &precise{}
		name := "precise"
		about := "ours with the pool's KV-cache events on: prefix matches from what each replica holds (one subscription per replica through the control plane's KV index, streamed to the proxy) instead of guesses"
		if n > 1 {
			name = fmt.Sprintf("precise ×%d proxies", n)
			about = fmt.Sprintf("precise on %d proxies behind a round-robin L4 balancer, all following the same index (and sharing fleet keys)", n)
		}
		r.Add(Strategy{Name: name, Kind: Variant, Proxies: n, Start: p.start, New: p.newPicker, FleetKeys: n > 1, About: about})
	}
}

// precise is one strategy's per-cell state (cells run one at a time).
type precise struct {
	mu     sync.Mutex
	scheds []*picker.Scheduler
	client *dpkv.Client
}

var preciseKV = &snapshotv1.KVEvents{Tokenizer: &snapshotv1.Tokenizer{Builtin: kvevents.TokenizerBytes}}

// Each implements dpkv.Schedulers over the proxies' pool schedulers.
func (p *precise) Each(fn func(pool string, profile *snapshotv1.PickerProfile, sched *picker.Scheduler)) {
	p.mu.Lock()
	scheds := append([]*picker.Scheduler(nil), p.scheds...)
	p.mu.Unlock()
	for _, s := range scheds {
		fn(poolName, &snapshotv1.PickerProfile{KvEvents: preciseKV}, s)
	}
}

func (p *precise) start(ctx context.Context, env *Env) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	eps := &snapshotv1.Endpoints{Name: poolName}
	for _, r := range env.Fleet.Replicas() {
		if err := r.StartKVEvents(ctx, &modelsim.KVEventsConfig{Enable: true, Publisher: "zmq", Endpoint: "tcp://*:0", ReplayEndpoint: "tcp://*:0", BufferSteps: 10_000, HWM: 100_000, MaxQueueSize: 100_000}); err != nil {
			cancel()
			return nil, err
		}
		host, port, _ := net.SplitHostPort(r.Addr())
		pp, _ := strconv.Atoi(port)
		// Each replica is its own pod (replicas share 127.0.0.1: without a
		// pod name they would read as one pod's data-parallel ranks).
		eps.Endpoints = append(eps.Endpoints, &snapshotv1.Endpoint{Address: host, Port: uint32(pp), Pod: "bench/" + r.Name(),
			KvEventsPort: portOf(r.KVEventsAddr()), KvReplayPort: portOf(r.KVReplayAddr())})
	}
	set, err := snapshot.NewSet(gateway, []snapshotv1.Named{
		&snapshotv1.Backend{Name: poolName, Kind: snapshotv1.Backend_INFERENCE_POOL, Endpoints: poolName, Picker: &snapshotv1.PickerProfile{KvEvents: preciseKV}},
		eps,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	// The index's push interval scaled like the exchange's (fleet.go).
	idx := kvindex.New(ctx, kvindex.Options{PushEvery: scaled(20*time.Millisecond, env.TimeScale)}, nil)
	idx.Update(map[string]*snapshot.Set{gateway: set})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, err
	}
	srv := grpc.NewServer()
	kvindex.NewService(idx, nil).Register(srv)
	go func() { _ = srv.Serve(lis) }()
	client := dpkv.New(dpkv.Config{Addr: lis.Addr().String(), NodeID: "bench", Gateway: gateway, Pools: p, AttachEvery: 10 * time.Millisecond})
	p.mu.Lock()
	p.scheds, p.client = nil, client
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); _ = client.Run(ctx) }()
	// Wait until every replica's publisher has the index's subscription
	// (what it publishes before is lost, as with vLLM) and the index
	// streams every replica (empty) to the client.
	ready := func() bool {
		for _, r := range env.Fleet.Replicas() {
			if !r.KVEventStats().Subscribed {
				return false
			}
		}
		return len(client.State().Pools[poolName].Servers) == env.Fleet.Len()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			srv.Stop()
			return nil, fmt.Errorf("kv index: the replicas' subscriptions did not reach the proxy: %+v", client.State())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return func() {
		cancel()
		<-done
		srv.Stop()
	}, nil
}

// newPicker is ours, whose prefix source the kv index client attaches.
func (p *precise) newPicker(env *Env) picker.Picker {
	s := newOurs(env).(*picker.Scheduler)
	p.mu.Lock()
	p.scheds = append(p.scheds, s)
	p.mu.Unlock()
	return s
}

func portOf(tcp string) uint32 {
	_, port, err := net.SplitHostPort(tcp[len("tcp://"):])
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return uint32(n)
}
