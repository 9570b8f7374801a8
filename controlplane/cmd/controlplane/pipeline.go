package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/infergate/infergate/controlplane/kvindex"
	"github.com/infergate/infergate/controlplane/metrics"
	"github.com/infergate/infergate/controlplane/provision"
	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/translate"
	"github.com/infergate/infergate/controlplane/xds"
	"github.com/infergate/infergate/proto/tracing"
)

// pipeline turns one set of inputs into snapshots and hands them to the xDS
// server: source → translate → snapshot → xds. Sources call apply from one
// goroutine at a time.
type pipeline struct {
	log     *slog.Logger
	xds     *xds.Server
	metrics *metrics.Metrics
	opts    translate.Options
	// ready is set once the first snapshots have been handed to the xDS
	// server (the control plane's readiness).
	ready atomic.Bool
	// observe, when set, receives every translation (Kubernetes mode: the
	// status writer and NACK events).
	observe func(*translate.Inputs, *translate.Output)
	// kv follows the snapshots' pools with KV events on.
	kv *kvindex.Index
	// prev and prevSets are the last translation and its snapshots, which
	// the next one starts from: gateways a change cannot affect are
	// neither translated nor hashed again.
	prev     *translate.Output
	prevSets map[string]*snapshot.Set
	// tracer records a trace per translation: translate, build, and the
	// snapshot pushes and deliveries the xDS server adds to it.
	tracer trace.Tracer
}

// apply translates whole inputs (the file source).
func (p *pipeline) apply(in *translate.Inputs) { p.applyChanges(in, nil) }

// applyChanges translates inputs that differ from the previous ones by ch
// (nil: unknown, translate everything).
func (p *pipeline) applyChanges(in *translate.Inputs, ch *translate.Changes) {
	start := time.Now()
	out := translate.TranslateIncremental(p.prev, in, p.opts, ch)
	translatedAt := time.Now()
	if p.observe != nil {
		p.observe(in, out)
	}
	if out == p.prev {
		// Nothing the translator reads changed (statuses written, most
		// often our own): the snapshots stand; the status writer has seen
		// the new inputs. No trace either: it would be one per status.
		p.log.Debug("translated", "gateways", len(out.Gateways), "translated", 0, "duration", time.Since(start).Round(time.Microsecond))
		return
	}
	// The trace starts now that there is something to push, back-dated to
	// the translation's start.
	ctx, span := p.tracer.Start(context.Background(), tracing.SpanTranslation, trace.WithTimestamp(start))
	defer span.End()
	_, step := p.tracer.Start(ctx, tracing.SpanTranslate, trace.WithTimestamp(start))
	step.End(trace.WithTimestamp(translatedAt))
	_, step = p.tracer.Start(ctx, tracing.SpanBuild)
	sets, err := snapshot.BuildChanged(out, p.prev, p.prevSets)
	step.End()
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		p.metrics.Translated(time.Since(start), nil, err)
		// A snapshot that cannot be built is a translator bug; keep serving
		// what the proxies have rather than pushing something partial, and
		// translate everything next time.
		p.prev, p.prevSets = nil, nil
		p.log.Error("building snapshots failed; keeping the previous ones", "err", err)
		return
	}
	translated := 0
	for gw, g := range out.Gateways {
		if p.prev == nil || p.prev.Gateways[gw] != g {
			translated++
		}
	}
	p.prev, p.prevSets = out, sets
	// The proxy count each gateway's Manifest carries builds on its Ready
	// proxy pods (Kubernetes; YAML rarely lists proxy pods). Counted here,
	// beside the translator rather than in it, so the snapshot version stays
	// a hash of configuration alone.
	p.xds.SetProxyPods(provision.ReadyProxies(in.Pods))
	p.xds.UpdateContext(ctx, sets)
	if p.kv != nil {
		p.kv.Update(sets)
	}
	p.ready.Store(true)
	resources := 0
	perGateway := make(map[string]int, len(sets))
	for gw, s := range sets {
		resources += s.Count()
		perGateway[gw] = s.Count()
	}
	p.metrics.Translated(time.Since(start), perGateway, nil)
	// Inputs that changed no gateway (a status written, an object nothing
	// reads) are routine: log them only when debugging.
	level := slog.LevelInfo
	if translated == 0 {
		level = slog.LevelDebug
	}
	span.SetAttributes(attribute.Int(tracing.AttrGateways, len(sets)), attribute.Int(tracing.AttrResources, resources))
	p.log.Log(context.Background(), level, "translated", "gateways", len(sets), "translated", translated, "resources", resources,
		"duration", time.Since(start).Round(time.Microsecond))
}
