package xds

import (
	"context"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/proto/tracing"
)

// WithTracer records a span for every snapshot a gateway is served (child
// of the context passed to UpdateContext: the translation that built it)
// and, as its children, one per response a proxy is sent, from the send to
// the proxy's ACK or NACK: how long a change took to reach each proxy, and
// why a proxy refused it. Default: no spans.
func WithTracer(t trace.Tracer) Option {
	return func(o *options) { o.tracer = t }
}

// pushes remembers each gateway's latest push span, the parent of the
// deliveries that carry it. Its own lock is a leaf: stream callbacks read
// it while holding pmu.
type pushes struct {
	mu   sync.Mutex
	last map[string]trace.SpanContext
}

func (s *Server) tracer() trace.Tracer {
	if s.opts.tracer == nil {
		return noop.Tracer{}
	}
	return s.opts.tracer
}

// tracePush records that gw is now served set (reason: "snapshot" for a new
// version, "proxy count" for a Manifest re-sent with a new count).
func (s *Server) tracePush(ctx context.Context, gw string, set *snapshot.Set, reason string, proxies int) {
	_, sp := s.tracer().Start(ctx, tracing.SpanPush, trace.WithAttributes(
		attribute.String(tracing.AttrGateway, gw),
		attribute.String(tracing.AttrVersion, set.Version),
		attribute.Int(tracing.AttrResources, set.Count()),
		attribute.String("infergate.push.reason", reason),
		attribute.Int("infergate.proxies", proxies),
	))
	sp.End()
	if !sp.SpanContext().IsValid() {
		return
	}
	s.pushes.mu.Lock()
	if s.pushes.last == nil {
		s.pushes.last = map[string]trace.SpanContext{}
	}
	s.pushes.last[gw] = sp.SpanContext()
	s.pushes.mu.Unlock()
}

// forgetPush drops a removed gateway's push span.
func (s *Server) forgetPush(gw string) {
	s.pushes.mu.Lock()
	delete(s.pushes.last, gw)
	s.pushes.mu.Unlock()
}

// startDelivery starts the span of one response to a proxy of gw; it ends
// with the proxy's answer (endDelivery).
func (s *Server) startDelivery(gw, node string, resp *discoveryv3.DeltaDiscoveryResponse) trace.Span {
	ctx := context.Background()
	s.pushes.mu.Lock()
	if sc, ok := s.pushes.last[gw]; ok {
		ctx = trace.ContextWithSpanContext(ctx, sc)
	}
	s.pushes.mu.Unlock()
	_, sp := s.tracer().Start(ctx, tracing.SpanDeliver, trace.WithAttributes(
		attribute.String(tracing.AttrGateway, gw),
		attribute.String(tracing.AttrNode, node),
		attribute.String(tracing.AttrTypeURL, resp.GetTypeUrl()),
		attribute.String(tracing.AttrVersion, resp.GetSystemVersionInfo()),
		attribute.Int(tracing.AttrResources, len(resp.GetResources())),
		attribute.Int(tracing.AttrRemoved, len(resp.GetRemovedResources())),
	))
	return sp
}

// endDelivery ends a delivery span with the proxy's verdict: nackReason
// is empty for an ACK.
func endDelivery(sp trace.Span, nackReason string) {
	if sp == nil {
		return
	}
	if nackReason != "" {
		sp.SetAttributes(attribute.String(tracing.AttrNack, nackReason))
		sp.SetStatus(codes.Error, "NACK: "+nackReason)
	}
	sp.End()
}
