package debug

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/infergate/infergate/controlplane/kvindex"
	debugv1 "github.com/infergate/infergate/proto/debug/v1"
)

// WithKVIndex makes GetKVEvents report x's subscriptions.
func (s *Service) WithKVIndex(x *kvindex.Index) *Service {
	s.kv = x
	return s
}

// GetKVEvents reports the KV-event subscriptions of a gateway's pools.
func (s *Service) GetKVEvents(_ context.Context, req *debugv1.GetKVEventsRequest) (*debugv1.GetKVEventsResponse, error) {
	if s.kv == nil {
		return nil, status.Error(codes.Unimplemented, "this control plane does not subscribe to KV events")
	}
	out := &debugv1.GetKVEventsResponse{}
	for _, p := range s.kv.Stats(req.GetGateway()) {
		kp := &debugv1.KVPool{Pool: p.Pool, Blocks: p.Blocks}
		for _, sv := range p.Servers {
			ks := &debugv1.KVServer{
				Endpoint: sv.Endpoint, EventsAddress: sv.EventsAddr, Connected: sv.Connected, LastSeq: sv.LastSeq,
				Batches: sv.Batches, Events: sv.Events, Gaps: sv.Gaps, Replays: sv.Replays, Resyncs: sv.Resyncs,
				Malformed: sv.Malformed, UnknownBlocks: sv.UnknownBlocks, Blocks: sv.Blocks, DroppedBlocks: sv.DroppedBlocks,
				BlockSize: uint32(sv.BlockSize), Error: sv.Err,
			}
			if !sv.LastEvent.IsZero() {
				ks.LastEvent = timestamppb.New(sv.LastEvent)
			}
			kp.Servers = append(kp.Servers, ks)
		}
		out.Pools = append(out.Pools, kp)
	}
	return out, nil
}
