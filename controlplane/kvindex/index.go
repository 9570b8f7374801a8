// Package kvindex subscribes to the KV-cache events of the model servers
// of every pool whose profile turns them on (one subscription per server,
// whatever the number of proxies or gateways), keeps each server's block
// index, and streams a gateway's pools' indexes to its proxies (KVIndex
// Watch), so every proxy matches prompts against what the servers
// actually hold.
package kvindex

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/proto/kvevents"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Options of an Index.
type Options struct {
	// MaxBlocksPerServer bounds one server's index (default 262,144 blocks,
	// ~4M tokens at 16 per block; about 10 MB): beyond it the oldest stored
	// blocks are dropped (and counted).
	MaxBlocksPerServer int
	// PushEvery is the shortest time between two sends to one proxy
	// (default 20 ms): changes in between go out together.
	PushEvery time.Duration
	// BackoffMin and BackoffMax bound reconnect delays (250 ms, 10 s).
	BackoffMin, BackoffMax time.Duration
	// ReplayTimeout bounds a replay request (default 2 s).
	ReplayTimeout time.Duration
	// Limits bound one decoded batch.
	Limits kvevents.Limits
}

// DefaultEventsPort is vLLM's default KV-events endpoint port.
const DefaultEventsPort = 5557

// Index is the control plane's KV-cache block index.
type Index struct {
	ctx    context.Context
	opts   Options
	log    *slog.Logger
	totals totals

	mu      sync.Mutex
	servers map[serverSpec]*server
	pools   map[string]map[string]*pool // gateway → backend name → pool
	subs    map[string]map[chan struct{}]struct{}
}

type serverSpec struct{ endpoint, events, replay, topic string }

type pool struct {
	name    string
	servers []*server // by endpoint
}

// New returns an index whose subscriptions live until ctx ends.
func New(ctx context.Context, o Options, log *slog.Logger) *Index {
	if o.MaxBlocksPerServer <= 0 {
		o.MaxBlocksPerServer = 1 << 18
	}
	if o.PushEvery <= 0 {
		o.PushEvery = 20 * time.Millisecond
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 250 * time.Millisecond
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(10*time.Second, o.BackoffMin)
	}
	if o.ReplayTimeout <= 0 {
		o.ReplayTimeout = 2 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	return &Index{ctx: ctx, opts: o, log: log, servers: map[serverSpec]*server{}, pools: map[string]map[string]*pool{}, subs: map[string]map[chan struct{}]struct{}{}}
}

// Update follows the translated snapshots: every endpoint of a pool with
// KV events on gets a subscription (shared by every gateway and pool
// naming the same server); subscriptions of servers no longer in any pool
// end, and their blocks are dropped with them.
func (x *Index) Update(sets map[string]*snapshot.Set) {
	want := map[serverSpec]bool{}
	pools := map[string]map[string][]serverSpec{}
	for gw, set := range sets {
		eps := map[string]*snapshotv1.Endpoints{}
		for _, r := range set.Resources[snapshotv1.TypeEndpoints] {
			e := r.(*snapshotv1.Endpoints)
			eps[e.GetName()] = e
		}
		for _, r := range set.Resources[snapshotv1.TypeBackend] {
			b := r.(*snapshotv1.Backend)
			kv := b.GetPicker().GetKvEvents()
			if b.GetKind() != snapshotv1.Backend_INFERENCE_POOL || kv == nil {
				continue
			}
			specs := Specs(kv, eps[b.GetEndpoints()].GetEndpoints())
			for _, s := range specs {
				want[s] = true
			}
			if pools[gw] == nil {
				pools[gw] = map[string][]serverSpec{}
			}
			pools[gw][b.GetName()] = specs
		}
	}
	x.mu.Lock()
	var stop []*server
	for spec, s := range x.servers {
		if !want[spec] {
			stop = append(stop, s)
			delete(x.servers, spec)
		}
	}
	for spec := range want {
		if x.servers[spec] == nil {
			s := newServer(spec.endpoint, spec.events, spec.replay, spec.topic, &x.opts, &x.totals, x.log, x.changed)
			x.servers[spec] = s
			s.start(x.ctx)
		}
	}
	x.pools = map[string]map[string]*pool{}
	for gw, ps := range pools {
		x.pools[gw] = map[string]*pool{}
		for name, specs := range ps {
			p := &pool{name: name}
			for _, s := range specs {
				p.servers = append(p.servers, x.servers[s])
			}
			x.pools[gw][name] = p
		}
	}
	x.mu.Unlock()
	// Stopping waits for a subscription's goroutine; the translation
	// pipeline does not wait for it.
	go func() {
		for _, s := range stop {
			s.stop()
		}
	}()
	x.changed()
}

// Specs are the subscriptions of a pool's endpoints: events on the pod
// annotation's port or the profile's (5557), replay likewise (none when
// neither sets one). Endpoints of one pod (or, without a pod name, one
// address) on several ports (data-parallel ranks, in port order) publish
// on consecutive ports, as vLLM offsets its endpoint by the rank.
func Specs(kv *snapshotv1.KVEvents, eps []*snapshotv1.Endpoint) []serverSpec {
	rank := map[string]int{}
	var out []serverSpec
	sorted := slices.Clone(eps)
	slices.SortFunc(sorted, func(a, b *snapshotv1.Endpoint) int {
		if a.GetAddress() != b.GetAddress() {
			if a.GetAddress() < b.GetAddress() {
				return -1
			}
			return 1
		}
		return int(a.GetPort()) - int(b.GetPort())
	})
	for _, e := range sorted {
		pod := e.GetPod()
		if pod == "" {
			pod = e.GetAddress()
		}
		r := rank[pod]
		rank[pod] = r + 1
		port := uint32(DefaultEventsPort)
		if kv.GetPort() != 0 {
			port = kv.GetPort()
		}
		if e.GetKvEventsPort() != 0 {
			port = e.GetKvEventsPort()
		}
		replay := kv.GetReplayPort()
		if e.GetKvReplayPort() != 0 {
			replay = e.GetKvReplayPort()
		}
		s := serverSpec{
			endpoint: net.JoinHostPort(e.GetAddress(), strconv.Itoa(int(e.GetPort()))),
			events:   "tcp://" + net.JoinHostPort(e.GetAddress(), strconv.Itoa(int(port)+r)),
			topic:    kv.GetTopic(),
		}
		if replay != 0 {
			s.replay = "tcp://" + net.JoinHostPort(e.GetAddress(), strconv.Itoa(int(replay)+r))
		}
		out = append(out, s)
	}
	return out
}

// changed wakes every stream.
func (x *Index) changed() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, subs := range x.subs {
		for ch := range subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (x *Index) subscribe(gw string) chan struct{} {
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.subs[gw] == nil {
		x.subs[gw] = map[chan struct{}]struct{}{}
	}
	x.subs[gw][ch] = struct{}{}
	return ch
}

func (x *Index) unsubscribe(gw string, ch chan struct{}) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.subs[gw], ch)
	if len(x.subs[gw]) == 0 {
		delete(x.subs, gw)
	}
}

// gatewayPools returns gw's pools (all gateways' when gw is "").
func (x *Index) gatewayPools(gw string) map[string]*pool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if gw != "" {
		return maps.Clone(x.pools[gw])
	}
	out := map[string]*pool{}
	for _, ps := range x.pools {
		maps.Copy(out, ps)
	}
	return out
}

// PoolStats is one pool's subscriptions.
type PoolStats struct {
	Pool    string
	Servers []ServerState
	Blocks  int64
}

// ServerState is one server's subscription state.
type ServerState struct {
	Endpoint, EventsAddr string
	ServerStats
}

// Stats returns the subscriptions of gw's pools ("" : every gateway's),
// sorted by pool name.
func (x *Index) Stats(gw string) []PoolStats {
	ps := x.gatewayPools(gw)
	var out []PoolStats
	for _, name := range slices.Sorted(maps.Keys(ps)) {
		p := PoolStats{Pool: name}
		for _, s := range ps[name].servers {
			st := s.stats()
			p.Blocks += st.Blocks
			p.Servers = append(p.Servers, ServerState{Endpoint: s.endpoint, EventsAddr: s.eventsAddr, ServerStats: st})
		}
		out = append(out, p)
	}
	return out
}
