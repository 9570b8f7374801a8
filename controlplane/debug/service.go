// Package debug implements the control plane's Debug gRPC service: which
// proxies are connected and in what sync state, and exactly what each gateway
// is served.
package debug

import (
	"context"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/infergate/infergate/controlplane/fleet"
	"github.com/infergate/infergate/controlplane/kvindex"
	"github.com/infergate/infergate/controlplane/xds"
	debugv1 "github.com/infergate/infergate/proto/debug/v1"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Service answers Debug RPCs from the xDS server's state.
type Service struct {
	debugv1.UnimplementedDebugServer
	xds   *xds.Server
	fleet *fleet.Aggregator
	kv    *kvindex.Index
}

var _ debugv1.DebugServer = (*Service)(nil)

// NewService builds the Debug service over x.
func NewService(x *xds.Server) *Service {
	return &Service{xds: x}
}

// WithFleetKeys makes GetSnapshot show the fleet-wide prefix keys agg
// serves each gateway.
func (s *Service) WithFleetKeys(agg *fleet.Aggregator) *Service {
	s.fleet = agg
	return s
}

// Register adds the Debug service to g.
func (s *Service) Register(g *grpc.Server) {
	debugv1.RegisterDebugServer(g, s)
}

// ListProxies reports every identified proxy with its per-type sync state.
func (s *Service) ListProxies(context.Context, *debugv1.ListProxiesRequest) (*debugv1.ListProxiesResponse, error) {
	ps := s.xds.Proxies()
	out := &debugv1.ListProxiesResponse{Proxies: make([]*debugv1.Proxy, 0, len(ps))}
	for _, p := range ps {
		dp := &debugv1.Proxy{
			NodeId:      p.NodeID,
			Gateway:     p.Gateway,
			Pod:         p.Pod,
			Address:     p.Address,
			ConnectedAt: timestamppb.New(p.ConnectedAt),
			Stale:       p.Stale,
		}
		if !p.LastSync.IsZero() {
			dp.LastSync = timestamppb.New(p.LastSync)
		}
		for _, t := range p.Types {
			dp.Types = append(dp.Types, &debugv1.TypeSync{
				TypeUrl: t.TypeURL, Sent: t.Sent, Acked: t.Acked, Nacked: t.Nacked, NackReason: t.NackReason,
			})
		}
		out.Proxies = append(out.Proxies, dp)
	}
	return out, nil
}

// GetSnapshot returns the resources served to one gateway, optionally only
// one type (full type URL or short name such as "Route", case-insensitive).
func (s *Service) GetSnapshot(_ context.Context, req *debugv1.GetSnapshotRequest) (*debugv1.GetSnapshotResponse, error) {
	if req.GetGateway() == "" {
		return nil, status.Error(codes.InvalidArgument, "gateway is required (\"<namespace>/<name>\")")
	}
	set := s.xds.Set(req.GetGateway())
	if set == nil {
		return nil, status.Errorf(codes.NotFound, "no snapshot for gateway %q", req.GetGateway())
	}
	typeURL := ""
	if req.GetType() != "" {
		var ok bool
		if typeURL, ok = ResolveType(req.GetType()); !ok {
			return nil, status.Errorf(codes.InvalidArgument, "unknown resource type %q (known: %s)", req.GetType(), strings.Join(shortNames(), ", "))
		}
	}
	res, err := set.Any(typeURL)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode snapshot: %v", err)
	}
	out := &debugv1.GetSnapshotResponse{Gateway: set.Gateway, Version: set.Version, Resources: res}
	if s.fleet != nil && typeURL == "" {
		out.FleetKeys, _ = s.fleet.Keys(req.GetGateway())
	}
	return out, nil
}

// ListGateways lists the gateways with a snapshot and their versions.
func (s *Service) ListGateways(context.Context, *debugv1.ListGatewaysRequest) (*debugv1.ListGatewaysResponse, error) {
	sets := s.xds.Sets()
	out := &debugv1.ListGatewaysResponse{Gateways: make([]*debugv1.GatewayVersion, 0, len(sets))}
	for gw, set := range sets {
		out.Gateways = append(out.Gateways, &debugv1.GatewayVersion{Gateway: gw, Version: set.Version})
	}
	sort.Slice(out.Gateways, func(i, j int) bool { return out.Gateways[i].Gateway < out.Gateways[j].Gateway })
	return out, nil
}

// ResolveType maps a full type URL or a short type name ("Route", "route")
// to the snapshot type URL.
func ResolveType(t string) (string, bool) {
	for _, u := range snapshotv1.Types() {
		if t == u || strings.EqualFold(t, shortName(u)) {
			return u, true
		}
	}
	return "", false
}

func shortName(typeURL string) string {
	return typeURL[strings.LastIndex(typeURL, ".")+1:]
}

func shortNames() []string {
	var out []string
	for _, u := range snapshotv1.Types() {
		out = append(out, shortName(u))
	}
	return out
}
