package xds

import (
	"context"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// proxy is the server's view of one ADS stream.
type proxy struct {
	ctx         context.Context
	address     string
	connectedAt time.Time
	node        *corev3.Node // nil until the first request
	gateway     string
	lastSync    time.Time
	types       map[string]*typeSync
	// syncedAt is the last version OnSynced fired for.
	syncedAt string
}

type typeSync struct {
	sent, acked, nacked, nackReason string
	// pending maps the nonce of each response not yet ACKed or NACKed to the
	// snapshot version it carried (delta ACKs name only the nonce) and the
	// response's delivery span.
	pending map[string]pendingResponse
}

type pendingResponse struct {
	version string
	span    trace.Span
}

func (p *proxy) typ(typeURL string) *typeSync {
	t, ok := p.types[typeURL]
	if !ok {
		t = &typeSync{pending: map[string]pendingResponse{}}
		p.types[typeURL] = t
	}
	return t
}

// ProxyStatus is what the server knows about one connected proxy.
type ProxyStatus struct {
	StreamID    int64
	NodeID      string
	Gateway     string
	Pod         string
	Address     string
	ConnectedAt time.Time
	// LastSync is when the proxy last ACKed anything (zero if never).
	LastSync time.Time
	// Types is ordered as snapshotv1.Types(), then any other type URL.
	Types []TypeStatus
	// Stale is true when the proxy has not ACKed its gateway's current
	// snapshot: the manifest ACKed at another version, a response still
	// unanswered, or the last response of some type NACKed.
	Stale bool
}

// TypeStatus is the sync state of one resource type on one stream. Versions
// are snapshot versions (snapshot.Set.Version, "empty" for an empty one).
type TypeStatus struct {
	TypeURL    string
	Sent       string
	Acked      string
	Nacked     string
	NackReason string
}

func (s *Server) onStreamOpen(ctx context.Context, id int64, _ string) error {
	p := &proxy{ctx: ctx, connectedAt: time.Now(), types: map[string]*typeSync{}}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		p.address = pr.Addr.String()
	}
	s.pmu.Lock()
	s.proxies[id] = p
	s.pmu.Unlock()
	return nil
}

func (s *Server) onStreamClosed(id int64, node *corev3.Node) {
	s.pmu.Lock()
	p := s.proxies[id]
	delete(s.proxies, id)
	s.pmu.Unlock()
	if p != nil {
		for _, t := range p.types {
			for _, pr := range t.pending {
				endDelivery(pr.span, "stream closed before the proxy answered")
			}
		}
	}
	if p != nil && p.node != nil {
		s.log.Info("xds: proxy disconnected", "node", node.GetId(), "gateway", p.gateway, "address", p.address)
		s.countsMayHaveChanged()
	}
}

func (s *Server) onRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	s.pmu.Lock()
	p := s.proxies[id]
	if p == nil {
		s.pmu.Unlock()
		return status.Error(codes.Internal, "unknown stream")
	}
	if p.node == nil {
		// First request: identify and authorize the proxy before anything is
		// recorded or served.
		ctx := p.ctx
		s.pmu.Unlock()
		node := req.GetNode()
		gw := nodeGateway(node)
		if gw == "" {
			return status.Errorf(codes.InvalidArgument, "the first request must carry a node with metadata %q = \"<namespace>/<name>\"", MetadataGateway)
		}
		if s.opts.authorize != nil {
			if err := s.opts.authorize(ctx, node); err != nil {
				s.log.Warn("xds: proxy refused", "node", node.GetId(), "gateway", gw, "err", err)
				return err
			}
		}
		s.log.Info("xds: proxy connected", "node", node.GetId(), "gateway", gw, "pod", nodePod(node))
		// Recorded before ensureServed so a concurrent Update sees the
		// gateway as connected and does not garbage-collect its snapshot.
		s.pmu.Lock()
		p.node, p.gateway = node, gw
		s.pmu.Unlock()
		s.countsMayHaveChanged()
		s.ensureServed(gw)
		s.pmu.Lock()
	}
	node, gw := p.node, p.gateway
	var (
		acked, nacked bool
		version       string
		reason        string
	)
	if nonce := req.GetResponseNonce(); nonce != "" {
		t := p.typ(req.GetTypeUrl())
		if pr, known := t.pending[nonce]; known {
			delete(t.pending, nonce)
			v := pr.version
			version = v
			if d := req.GetErrorDetail(); d != nil {
				nacked, reason = true, d.GetMessage()
				t.nacked, t.nackReason = v, reason
				endDelivery(pr.span, reason)
			} else {
				endDelivery(pr.span, "")
				acked = true
				t.acked = v
				p.lastSync = time.Now()
				// The proxy judges its whole state, not one type: a NACK
				// lands on whichever type's response completed a bad
				// snapshot, and a later snapshot may fix it without
				// resending that type. Accepting another version therefore
				// clears NACKs of every type.
				for _, other := range p.types {
					if other.nacked != v {
						other.nacked, other.nackReason = "", ""
					}
				}
			}
		}
	}
	s.pmu.Unlock()

	switch {
	case nacked:
		s.stats.nacks.Add(1)
		s.log.Warn("xds: proxy NACKed", "node", node.GetId(), "gateway", gw, "type", req.GetTypeUrl(), "version", version, "reason", reason)
		for _, fn := range s.opts.onNack {
			fn(gw, node.GetId(), req.GetTypeUrl(), reason)
		}
	case acked:
		s.stats.acks.Add(1)
		s.checkSynced(id, gw, node.GetId())
	}
	return nil
}

// checkSynced fires the OnSynced hook the first time a proxy has answered
// every response with an ACK and holds the manifest of its gateway's current
// snapshot.
func (s *Server) checkSynced(id int64, gw, nodeID string) {
	if len(s.opts.onSynced) == 0 {
		return
	}
	s.mu.Lock()
	cur, at := s.currentVersionLocked(gw), s.updatedAt[gw]
	s.mu.Unlock()
	if cur == "" {
		return
	}
	s.pmu.Lock()
	p := s.proxies[id]
	synced := p != nil && p.syncedAt != cur && p.inSync(cur)
	if synced {
		p.syncedAt = cur
	}
	s.pmu.Unlock()
	if synced {
		for _, fn := range s.opts.onSynced {
			fn(gw, nodeID, cur, time.Since(at))
		}
	}
}

// inSync: nothing unanswered, nothing NACKed, manifest ACKed at version cur.
func (p *proxy) inSync(cur string) bool {
	m := p.types[snapshotv1.TypeManifest]
	return !p.unsettled() && m != nil && m.acked == cur
}

// unsettled: a response is unanswered or the proxy's last verdict was a NACK.
func (p *proxy) unsettled() bool {
	for _, t := range p.types {
		if len(t.pending) > 0 || t.nacked != "" {
			return true
		}
	}
	return false
}

func (s *Server) onResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	s.stats.responses.Add(1)
	s.stats.resourcesSent.Add(uint64(len(resp.GetResources())))
	s.stats.resourcesRemoved.Add(uint64(len(resp.GetRemovedResources())))
	s.pmu.Lock()
	defer s.pmu.Unlock()
	p := s.proxies[id]
	if p == nil {
		return
	}
	t := p.typ(resp.GetTypeUrl())
	t.sent = resp.GetSystemVersionInfo()
	t.pending[resp.GetNonce()] = pendingResponse{version: resp.GetSystemVersionInfo(),
		span: s.startDelivery(p.gateway, p.node.GetId(), resp)}
}

// Proxies lists the identified proxies, ordered by gateway then node id.
func (s *Server) Proxies() []ProxyStatus {
	versions, ready := s.currentVersions()
	order := map[string]int{}
	for i, t := range snapshotv1.Types() {
		order[t] = i + 1
	}
	s.pmu.Lock()
	out := make([]ProxyStatus, 0, len(s.proxies))
	for id, p := range s.proxies {
		if p.node == nil {
			continue
		}
		ps := ProxyStatus{
			StreamID:    id,
			NodeID:      p.node.GetId(),
			Gateway:     p.gateway,
			Pod:         nodePod(p.node),
			Address:     p.address,
			ConnectedAt: p.connectedAt,
			LastSync:    p.lastSync,
		}
		for typeURL, t := range p.types {
			ps.Types = append(ps.Types, TypeStatus{TypeURL: typeURL, Sent: t.sent, Acked: t.acked, Nacked: t.nacked, NackReason: t.nackReason})
		}
		if ready {
			cur, ok := versions[p.gateway]
			if !ok {
				cur = emptyVersion
			}
			ps.Stale = !p.inSync(cur)
		} else {
			ps.Stale = p.unsettled()
		}
		sort.Slice(ps.Types, func(i, j int) bool {
			oi, oj := order[ps.Types[i].TypeURL], order[ps.Types[j].TypeURL]
			if oi == 0 {
				oi = len(order) + 1
			}
			if oj == 0 {
				oj = len(order) + 1
			}
			if oi != oj {
				return oi < oj
			}
			return ps.Types[i].TypeURL < ps.Types[j].TypeURL
		})
		out = append(out, ps)
	}
	s.pmu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Gateway != out[j].Gateway {
			return out[i].Gateway < out[j].Gateway
		}
		if out[i].NodeID != out[j].NodeID {
			return out[i].NodeID < out[j].NodeID
		}
		return out[i].StreamID < out[j].StreamID
	})
	return out
}
