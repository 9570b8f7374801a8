package fleet

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// Service serves the PrefixKeys stream from an Aggregator.
type Service struct {
	fleetv1.UnimplementedPrefixKeysServer
	agg *Aggregator
	log *slog.Logger
	// authorize checks a stream's gateway before anything is read from or
	// sent to it (nil: every stream is admitted).
	authorize func(ctx context.Context, gateway string) error
	// peers relays the reports of this replica's proxies and admits
	// peers' relays (nil: no peers; relays are refused).
	peers *Peers
	// streams numbers the Exchange streams (from 1), so a proxy's
	// problems go with the stream that reported them.
	streams atomic.Uint64
}

// NewService serves agg; authorize (may be nil) admits a stream for a
// gateway the way the xDS stream is admitted (use a gRPC status error).
func NewService(agg *Aggregator, logger *slog.Logger, authorize func(ctx context.Context, gateway string) error) *Service {
	if logger == nil {
		logger = slog.Default()
	}
	return &Service{agg: agg, log: logger, authorize: authorize}
}

// WithPeers relays the reports of the proxies connected here to p's
// peers and takes the reports p's peers relay (see Peers).
func (s *Service) WithPeers(p *Peers) *Service {
	s.peers = p
	return s
}

// Register adds the service to g.
func (s *Service) Register(g *grpc.Server) { fleetv1.RegisterPrefixKeysServer(g, s) }

// Exchange implements PrefixKeys: reports in; out, only when there is
// something new for the proxy: the gateway's key sets when they changed
// (at most once per PushEvery), and the sends the gateway's other proxies
// made since the last push when the proxy takes sends (at most once per
// SendsEvery, in several messages when they are many). A proxy that does
// not take sends gets key sets only, at most once per PushEvery.
func (s *Service) Exchange(stream fleetv1.PrefixKeys_ExchangeServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	gw, node := first.GetGateway(), first.GetNodeId()
	if !validStreamName(gw, node) {
		return status.Errorf(codes.InvalidArgument, "the first report must name the proxy (node_id) and its gateway as ns/name, got node %q gateway %q", node, gw)
	}
	if s.authorize != nil {
		if err := s.authorize(ctx, gw); err != nil {
			return err
		}
	}
	wake, ring, loads := s.agg.subscribe(gw)
	defer s.agg.unsubscribe(gw, wake)
	st := &streamState{node: node, takesSends: first.GetTakesSends(), cursor: ring.start(first.GetCatchUp()),
		loads: loads, loadCursor: loads.start()}
	id := s.streams.Add(1)
	defer s.agg.problems.ended(gw, node, id)
	if err := s.ingest(gw, node, id, first); err != nil {
		return err
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err == nil {
				err = s.ingest(gw, node, id, r)
			}
			if err != nil {
				recvErr <- err
				return
			}
		}
	}()
	var last time.Time
	// hold is set while a change waits for the push interval since the
	// last push (sends' when the proxy takes them).
	var hold <-chan time.Time
	every := s.agg.opts.PushEvery
	if st.takesSends {
		every = s.agg.opts.SendsEvery
	}
	for {
		select {
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
			if hold != nil {
				continue
			}
			if wait := every - time.Since(last); wait > 0 {
				hold = time.After(wait)
				continue
			}
		case <-hold:
			hold = nil
		}
		for {
			msg, more := s.agg.next(gw, ring, st)
			if msg == nil {
				break
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
			last = time.Now()
			if !more {
				break
			}
		}
		if st.keysHeld && hold == nil {
			// Key sets changed but went out less than PushEvery ago:
			// come back for them then, sends or not.
			hold = time.After(s.agg.opts.PushEvery - time.Since(st.keysAt))
		}
	}
}

func (s *Service) ingest(gw, node string, stream uint64, r *fleetv1.KeyReport) error {
	if (r.GetGateway() != "" && r.GetGateway() != gw) || (r.GetNodeId() != "" && r.GetNodeId() != node) {
		return status.Errorf(codes.InvalidArgument, "a stream reports for one proxy of one gateway (%s, %s), got %s, %s", node, gw, r.GetNodeId(), r.GetGateway())
	}
	if err := s.agg.Ingest(gw, node, r); err != nil {
		s.log.Warn("fleet: refusing key report", "gateway", gw, "node", node, "err", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	s.agg.problems.set(gw, node, stream, r.GetProblems())
	if s.peers != nil {
		s.peers.offer(gw, node, r)
	}
	return nil
}

// validStreamName reports whether a report names a proxy and its gateway
// as ns/name.
func validStreamName(gw, node string) bool {
	return node != "" && strings.Count(gw, "/") == 1 && !strings.HasPrefix(gw, "/") && !strings.HasSuffix(gw, "/")
}
