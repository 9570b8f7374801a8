package xds

import (
	"context"
	"fmt"
	"maps"
	"time"
)

// Proxy count. Every proxy scrapes the model servers itself; to keep the
// load on a model server independent of the number of proxies, each proxy
// scrapes every 50 ms × N, N being the count its gateway's Manifest carries
// (Manifest.proxy_count). The rule for N, per gateway:
//
//	N = max(1, identified xDS streams of the gateway on this replica,
//	        Ready proxy pods of the gateway (SetProxyPods))
//
// One control-plane replica sees only the streams connected to it, so in
// Kubernetes the pod count — the same on every replica, as it comes from the
// same informer cache — is what makes replicas agree; the stream count
// covers file mode and proxies that are not provisioned pods. N is not
// configuration: the snapshot version stays the content hash of the
// resources, and a change of N re-sends only the Manifest.

// proxyCount is the rule above.
func proxyCount(streams, pods int) int {
	return max(1, streams, pods)
}

// SetProxyPods records how many Ready proxy pods each gateway ("ns/name")
// has; gateways missing from the map have none. Run publishes the
// resulting counts.
func (s *Server) SetProxyPods(pods map[string]int) {
	s.mu.Lock()
	changed := !maps.Equal(s.proxyPods, pods)
	if changed {
		s.proxyPods = maps.Clone(pods)
	}
	s.mu.Unlock()
	if changed {
		s.countsMayHaveChanged()
	}
}

// countsMayHaveChanged wakes Run. It never blocks and never touches the
// snapshot cache, so stream callbacks may call it: go-control-plane calls
// them on the stream's goroutine, and calling into its cache from there
// could wait on that very stream.
func (s *Server) countsMayHaveChanged() {
	select {
	case s.countsChanged <- struct{}{}:
	default:
	}
}

// Run re-publishes a gateway's Manifest whenever its proxy count changes,
// until ctx is done. Changes are collected for the delay of
// WithProxyCountDelay after the first one and published together, so
// proxies coming and going in a burst cause a few pushes, and a count that
// returns to its published value in the meantime causes none. Without Run,
// counts are still applied to every new snapshot version by Update.
func (s *Server) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.countsChanged:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.opts.countDelay):
		}
		// Wake-ups during the delay are covered by this publish.
		select {
		case <-s.countsChanged:
		default:
		}
		s.publishProxyCounts()
	}
}

// publishProxyCounts serves a new Manifest to every gateway whose count
// differs from the one published.
func (s *Server) publishProxyCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	streams := s.streamsPerGateway()
	for gw, set := range s.sets {
		n := proxyCount(streams[gw], s.proxyPods[gw])
		if n == set.ProxyCount() {
			continue
		}
		next := set.WithProxyCount(n)
		snap, err := s.servedLocked(gw)
		if err == nil {
			snap, err = snap.withManifest(gw, next.Manifest())
		}
		if err != nil {
			s.log.Error("xds: cannot serve proxy count, keeping the previous", "gateway", gw, "err", err)
			continue
		}
		// Before serving, as in Update: the deliveries take it as parent.
		s.tracePush(context.Background(), gw, next, "proxy count", n)
		if err := s.serveLocked(context.Background(), gw, snap, next); err != nil {
			s.log.Error("xds: set snapshot", "gateway", gw, "err", err)
			continue
		}
		s.log.Info("xds: proxy count changed", "gateway", gw, "from", set.ProxyCount(), "to", n,
			"streams", streams[gw], "pods", s.proxyPods[gw])
		s.sets[gw] = next
		s.stats.proxyCountUpdates.Add(1)
	}
}

// servedLocked is the snapshot the cache serves to gw, the cache form of
// s.sets[gw] (Update and publishProxyCounts set both under mu). The
// caller holds mu.
func (s *Server) servedLocked(gw string) (*resourceSnapshot, error) {
	cur, err := s.cache.GetSnapshot(gw)
	if err != nil {
		return nil, err
	}
	snap, ok := cur.(*resourceSnapshot)
	if !ok {
		return nil, fmt.Errorf("cache holds a %T for gateway %s", cur, gw)
	}
	return snap, nil
}

// streamsPerGateway counts the identified streams of every gateway. It
// takes pmu, so callers may hold mu.
func (s *Server) streamsPerGateway() map[string]int {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	out := map[string]int{}
	for _, p := range s.proxies {
		if p.gateway != "" {
			out[p.gateway]++
		}
	}
	return out
}

// ProxyCount is the proxy count served to a gateway's proxies (0 when the
// gateway has no snapshot).
func (s *Server) ProxyCount(gateway string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if set, ok := s.sets[gateway]; ok {
		return set.ProxyCount()
	}
	return 0
}
