// Package xds serves per-gateway snapshots to proxies over delta ADS
// (go-control-plane's delta server and snapshot cache), tracks what every
// connected proxy has been sent, ACKed and NACKed, and tells each gateway's
// proxies how many of them there are (Manifest.proxy_count, see Run).
package xds

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/infergate/infergate/controlplane/snapshot"
)

// Option configures a Server.
type Option func(*options)

type options struct {
	onNack    []func(gateway, nodeID, typeURL, reason string)
	onSynced  []func(gateway, nodeID, version string, sinceUpdate time.Duration)
	authorize func(ctx context.Context, node *corev3.Node) error
	// countDelay coalesces proxy-count changes (see Run).
	countDelay time.Duration
	tracer     trace.Tracer
}

// WithOnNack registers a hook called (outside any lock, on the stream's
// goroutine) for every NACK a proxy sends, so the status writer can surface
// the reason on the Gateway. Hooks add up: each registered one is called.
func WithOnNack(fn func(gateway, nodeID, typeURL, reason string)) Option {
	return func(o *options) { o.onNack = append(o.onNack, fn) }
}

// WithOnSynced registers a hook called when a proxy ACKs the manifest of its
// gateway's current snapshot: the proxy holds the whole snapshot. sinceUpdate
// is the time since Update installed that snapshot (change-to-ACK latency).
// Hooks add up: each registered one is called.
func WithOnSynced(fn func(gateway, nodeID, version string, sinceUpdate time.Duration)) Option {
	return func(o *options) { o.onSynced = append(o.onSynced, fn) }
}

// WithAuthorizer checks a stream's first request before anything is served:
// ctx is the gRPC stream context (peer, credentials, metadata), node carries
// the gateway the proxy asks for. A non-nil error (use a gRPC status) ends the
// stream.
func WithAuthorizer(fn func(ctx context.Context, node *corev3.Node) error) Option {
	return func(o *options) { o.authorize = fn }
}

// WithProxyCountDelay sets how long Run collects proxy-count changes before
// re-publishing the affected Manifests (default 1 s): a rolling restart of a
// fleet of proxies then makes a handful of pushes, not one per stream.
func WithProxyCountDelay(d time.Duration) Option {
	return func(o *options) { o.countDelay = d }
}

// Server serves snapshot.Sets to proxies over delta ADS.
type Server struct {
	log   *slog.Logger
	opts  options
	cache cachev3.SnapshotCache
	xds   serverv3.Server

	// mu guards the served world. It is taken before pmu, never after.
	mu sync.Mutex
	// sets are the served snapshots, each Manifest carrying the gateway's
	// proxy count as published; the cache holds them as resourceSnapshots.
	sets      map[string]*snapshot.Set
	updatedAt map[string]time.Time
	// proxyPods is the number of Ready proxy pods per gateway (Kubernetes
	// mode; see SetProxyPods).
	proxyPods map[string]int
	// emptied holds gateways the cache serves an empty snapshot for.
	emptied map[string]bool
	// ready is set by the first Update: before it, proxies of unknown
	// gateways wait instead of being told everything is gone, so a restarting
	// control plane does not wipe proxies before it has loaded its config.
	ready bool

	pmu     sync.Mutex
	proxies map[int64]*proxy

	// countsChanged wakes Run when a stream joins or leaves a gateway or
	// the pod counts change; buffered 1, sent to without blocking.
	countsChanged chan struct{}

	stats counters
	// pushes are the latest push spans per gateway (see WithTracer).
	pushes pushes
}

type counters struct {
	snapshotUpdates, proxyCountUpdates, responses, resourcesSent, resourcesRemoved, acks, nacks atomic.Uint64
}

// NewServer builds a server with an empty world; call Update to serve.
func NewServer(logger *slog.Logger, opts ...Option) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		log:           logger,
		sets:          map[string]*snapshot.Set{},
		updatedAt:     map[string]time.Time{},
		proxyPods:     map[string]int{},
		emptied:       map[string]bool{},
		proxies:       map[int64]*proxy{},
		countsChanged: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(&s.opts)
	}
	if s.opts.countDelay <= 0 {
		s.opts.countDelay = time.Second
	}
	// ads=true only affects SotW name matching; delta ignores it.
	s.cache = cachev3.NewSnapshotCache(true, gatewayHash{}, cacheLogger{logger})
	s.xds = serverv3.NewServer(context.Background(), s.cache, serverv3.CallbackFuncs{
		DeltaStreamOpenFunc:     s.onStreamOpen,
		DeltaStreamClosedFunc:   s.onStreamClosed,
		StreamDeltaRequestFunc:  s.onRequest,
		StreamDeltaResponseFunc: s.onResponse,
	})
	return s
}

// deltaOnly exposes go-control-plane's ADS server with state-of-the-world
// refused: proxies speak delta only, and a SotW client would get a partial
// view of the semantics (manifest, per-resource versions) we rely on.
type deltaOnly struct{ serverv3.Server }

func (deltaOnly) StreamAggregatedResources(discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return status.Error(codes.Unimplemented, "infergate serves delta xDS only (DeltaAggregatedResources)")
}

// AuthorizeGateway admits a stream of another service for gateway's
// proxies (the fleet-key exchange) as an xDS stream for that gateway is
// admitted: through the WithAuthorizer hook, nil without one.
func (s *Server) AuthorizeGateway(ctx context.Context, gateway string) error {
	if s.opts.authorize == nil {
		return nil
	}
	md, err := structpb.NewStruct(map[string]any{MetadataGateway: gateway})
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return s.opts.authorize(ctx, &corev3.Node{Cluster: gateway, Metadata: md})
}

// Register adds the ADS service to g.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, deltaOnly{s.xds})
}

// Update replaces the whole world: sets maps gateway ("ns/name") to its
// snapshot. A gateway missing from the map gets an empty snapshot, so its
// proxies see every resource removed; a gateway whose Set.Version did not
// change is not pushed again. A new snapshot's Manifest carries the
// gateway's current proxy count (see Run).
func (s *Server) Update(sets map[string]*snapshot.Set) {
	s.UpdateContext(context.Background(), sets)
}

// UpdateContext is Update within ctx: the push spans (WithTracer) are its
// children.
func (s *Server) UpdateContext(ctx context.Context, sets map[string]*snapshot.Set) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	streams := s.streamsPerGateway()
	next := make(map[string]*snapshot.Set, len(sets))
	for gw, set := range sets {
		if set == nil {
			continue
		}
		if old, ok := s.sets[gw]; ok && old.Version == set.Version {
			next[gw] = old
			continue
		}
		n := proxyCount(streams[gw], s.proxyPods[gw])
		set = set.WithProxyCount(n)
		var prev *resourceSnapshot
		if _, ok := s.sets[gw]; ok {
			prev, _ = s.servedLocked(gw)
		}
		snap, err := newResourceSnapshot(set, prev)
		if err != nil {
			// Cannot happen for sets built by snapshot.NewSet; keep serving
			// the previous snapshot rather than a broken one.
			s.log.Error("xds: cannot serve snapshot, keeping previous", "gateway", gw, "version", set.Version, "err", err)
			if old, ok := s.sets[gw]; ok {
				next[gw] = old
			}
			continue
		}
		// The push span goes first: serving the snapshot starts the
		// deliveries, whose spans take it as their parent.
		s.tracePush(ctx, gw, set, "snapshot", n)
		if err := s.serveLocked(ctx, gw, snap, set); err != nil {
			s.log.Error("xds: set snapshot", "gateway", gw, "err", err)
		}
		next[gw] = set
		s.updatedAt[gw] = now
		delete(s.emptied, gw)
		s.stats.snapshotUpdates.Add(1)
		s.log.Debug("xds: snapshot updated", "gateway", gw, "version", set.Version, "resources", set.Count())
	}
	for gw := range s.sets {
		if _, ok := next[gw]; !ok {
			s.setEmptyLocked(gw)
			s.updatedAt[gw] = now
			s.forgetPush(gw)
			s.log.Info("xds: gateway removed, serving empty snapshot", "gateway", gw)
		}
	}
	s.sets = next
	s.ready = true
	s.gcEmptiedLocked()
}

// serveLocked installs snap, the cache form of set, for gw's proxies: as
// is for those that take the compact Manifest, with set's full Manifest for
// the others (see gatewayHash).
func (s *Server) serveLocked(ctx context.Context, gw string, snap *resourceSnapshot, set *snapshot.Set) error {
	full, err := snap.withManifest(gw, set.FullManifest())
	if err != nil {
		return err
	}
	if err := s.cache.SetSnapshot(ctx, gw, snap); err != nil {
		return err
	}
	return s.cache.SetSnapshot(ctx, fullManifestKey(gw), full)
}

func (s *Server) setEmptyLocked(gw string) {
	for _, key := range []string{gw, fullManifestKey(gw)} {
		if err := s.cache.SetSnapshot(context.Background(), key, emptySnapshot()); err != nil {
			s.log.Error("xds: set empty snapshot", "gateway", gw, "err", err)
		}
	}
	s.emptied[gw] = true
	s.stats.snapshotUpdates.Add(1)
}

// gcEmptiedLocked forgets empty snapshots nobody is connected to, so gateways
// that come and go do not accumulate; a proxy that connects later for such a
// gateway gets a fresh empty snapshot from ensureServed.
func (s *Server) gcEmptiedLocked() {
	if len(s.emptied) == 0 {
		return
	}
	connected := s.streamsPerGateway()
	for gw := range s.emptied {
		if connected[gw] == 0 {
			s.cache.ClearSnapshot(gw)
			s.cache.ClearSnapshot(fullManifestKey(gw))
			delete(s.emptied, gw)
			delete(s.updatedAt, gw)
		}
	}
}

// ensureServed makes sure a gateway a proxy asks for has a snapshot in the
// cache once the world is known, so a proxy of a deleted or unknown gateway
// is told it has nothing rather than left waiting with stale state.
func (s *Server) ensureServed(gw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready || s.emptied[gw] {
		return
	}
	if _, ok := s.sets[gw]; ok {
		return
	}
	s.setEmptyLocked(gw)
	s.updatedAt[gw] = time.Now()
}

// Set returns the snapshot served to a gateway, nil when there is none.
func (s *Server) Set(gateway string) *snapshot.Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sets[gateway]
}

// Sets returns every gateway's served snapshot (a copy of the map; the Sets
// are immutable).
func (s *Server) Sets() map[string]*snapshot.Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.sets)
}

// currentVersionLocked is the snapshot version proxies of gw should
// converge to, "" while the world is not known yet.
func (s *Server) currentVersionLocked(gw string) string {
	if set, ok := s.sets[gw]; ok {
		return set.Version
	}
	if s.ready {
		return emptyVersion
	}
	return ""
}

// currentVersions is the snapshot version proxies of gw should converge to,
// "" while the world is not known yet.
func (s *Server) currentVersions() (map[string]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.sets))
	for gw, set := range s.sets {
		out[gw] = set.Version
	}
	return out, s.ready
}

// Stats are cumulative counters since the server started, for metrics.
type Stats struct {
	// ConnectedProxies is the number of open ADS streams.
	ConnectedProxies int
	// StaleProxies is the number of identified proxies that do not hold
	// their gateway's current snapshot: a response unanswered, the last
	// one NACKed, or the Manifest ACKed at another version.
	StaleProxies int
	// SnapshotUpdates counts per-gateway snapshots installed (pushes).
	SnapshotUpdates uint64
	// ProxyCountUpdates counts Manifests re-published for a new proxy
	// count alone (see Run).
	ProxyCountUpdates uint64
	// Responses counts delta responses sent; ResourcesSent and
	// ResourcesRemoved the resources added/updated and removed in them.
	Responses, ResourcesSent, ResourcesRemoved uint64
	Acks, Nacks                                uint64
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	s.pmu.Lock()
	n := len(s.proxies)
	s.pmu.Unlock()
	stale := 0
	for _, p := range s.Proxies() {
		if p.Stale {
			stale++
		}
	}
	return Stats{
		ConnectedProxies:  n,
		StaleProxies:      stale,
		SnapshotUpdates:   s.stats.snapshotUpdates.Load(),
		ProxyCountUpdates: s.stats.proxyCountUpdates.Load(),
		Responses:         s.stats.responses.Load(),
		ResourcesSent:     s.stats.resourcesSent.Load(),
		ResourcesRemoved:  s.stats.resourcesRemoved.Load(),
		Acks:              s.stats.acks.Load(),
		Nacks:             s.stats.nacks.Load(),
	}
}
