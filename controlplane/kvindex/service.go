package kvindex

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvindexv1 "github.com/infergate/infergate/proto/kvindex/v1"
)

// Service serves KVIndex Watch streams from an Index.
type Service struct {
	kvindexv1.UnimplementedKVIndexServer
	x *Index
	// authorize admits a stream for a gateway like the xDS stream (nil:
	// every stream is admitted).
	authorize func(ctx context.Context, gateway string) error
}

// NewService serves x; authorize may be nil.
func NewService(x *Index, authorize func(ctx context.Context, gateway string) error) *Service {
	return &Service{x: x, authorize: authorize}
}

// Register adds the service to g.
func (s *Service) Register(g *grpc.Server) { kvindexv1.RegisterKVIndexServer(g, s) }

// maxKeysPerMessage bounds one update (8 bytes a key): servers beyond it
// go out in the next message, at once.
const maxKeysPerMessage = 1 << 19

// Watch sends the gateway's pools' index, then its changes, at most one
// message per PushEvery unless a big initial sync spans several.
func (s *Service) Watch(req *kvindexv1.WatchRequest, stream kvindexv1.KVIndex_WatchServer) error {
	gw := req.GetGateway()
	if req.GetNodeId() == "" || strings.Count(gw, "/") != 1 || strings.HasPrefix(gw, "/") || strings.HasSuffix(gw, "/") {
		return status.Errorf(codes.InvalidArgument, "a watch must name the proxy (node_id) and its gateway as ns/name, got node %q gateway %q", req.GetNodeId(), gw)
	}
	if s.authorize != nil {
		if err := s.authorize(stream.Context(), gw); err != nil {
			return err
		}
	}
	wake := s.x.subscribe(gw)
	defer s.x.unsubscribe(gw, wake)
	st := newStreamState()
	var last time.Time
	for {
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-wake:
		}
		if wait := s.x.opts.PushEvery - time.Since(last); wait > 0 {
			select {
			case <-stream.Context().Done():
				return stream.Context().Err()
			case <-time.After(wait):
			}
		}
		for {
			u, more := s.x.delta(gw, st)
			if u == nil {
				break
			}
			if err := stream.Send(u); err != nil {
				return err
			}
			last = time.Now()
			if !more {
				break
			}
		}
	}
}

// streamState is what one stream has sent.
type streamState struct {
	pools map[string]map[string]sentServer // pool → endpoint → cursor
	// adapters last sent per pool, joined.
	adapters map[string]string
}

type sentServer struct {
	srv *server
	cursor
}

func newStreamState() *streamState {
	return &streamState{pools: map[string]map[string]sentServer{}, adapters: map[string]string{}}
}

// delta builds the next update for a stream (nil: nothing changed); more
// says the key budget left some servers for another message.
func (x *Index) delta(gw string, st *streamState) (*kvindexv1.IndexUpdate, bool) {
	u := &kvindexv1.IndexUpdate{}
	pools := x.gatewayPools(gw)
	budget, more := maxKeysPerMessage, false
	for _, name := range slices.Sorted(maps.Keys(pools)) {
		p := pools[name]
		sent := st.pools[name]
		if sent == nil {
			sent = map[string]sentServer{}
			st.pools[name] = sent
		}
		pb := &kvindexv1.PoolBlocks{Pool: name}
		present := map[string]bool{}
		adapters := map[string]struct{}{}
		for _, srv := range p.servers {
			present[srv.endpoint] = true
			if budget <= 0 {
				more = true
				continue
			}
			prev := sent[srv.endpoint]
			c := prev.cursor
			if prev.srv != srv {
				c = cursor{}
			}
			srv.mu.Lock()
			next, full, added, removed := srv.idx.since(c, nil, nil)
			bs := srv.idx.blockSize
			for a := range srv.idx.adapters {
				adapters[a] = struct{}{}
			}
			srv.mu.Unlock()
			sent[srv.endpoint] = sentServer{srv, next}
			if !full && len(added) == 0 && len(removed) == 0 {
				continue
			}
			budget -= len(added) + len(removed)
			pb.Servers = append(pb.Servers, &kvindexv1.ServerBlocks{Endpoint: srv.endpoint, BlockSize: uint32(bs), Replace: full, Added: added, Removed: removed})
		}
		for ep := range sent {
			if !present[ep] {
				pb.RemovedServers = append(pb.RemovedServers, ep)
				delete(sent, ep)
			}
		}
		slices.Sort(pb.RemovedServers)
		pb.Adapters = slices.Sorted(maps.Keys(adapters))
		j := strings.Join(pb.Adapters, "\x00")
		if len(pb.Servers) > 0 || len(pb.RemovedServers) > 0 || j != st.adapters[name] {
			st.adapters[name] = j
			u.Pools = append(u.Pools, pb)
		}
	}
	for name := range st.pools {
		if pools[name] == nil {
			u.RemovedPools = append(u.RemovedPools, name)
			delete(st.pools, name)
			delete(st.adapters, name)
		}
	}
	slices.Sort(u.RemovedPools)
	if len(u.Pools) == 0 && len(u.RemovedPools) == 0 {
		return nil, false
	}
	return u, more
}
