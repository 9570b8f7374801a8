package main

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/controlplane/kvindex"
	"github.com/infergate/infergate/controlplane/metrics"
	"github.com/infergate/infergate/controlplane/provision"
	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/translate"
	"github.com/infergate/infergate/controlplane/xds"
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
}

func (p *pipeline) apply(in *translate.Inputs) {
	start := time.Now()
	out := translate.Translate(in, p.opts)
	if p.observe != nil {
		p.observe(in, out)
	}
	sets, err := snapshot.BuildAll(out)
	if err != nil {
		p.metrics.Translated(time.Since(start), nil, err)
		// A snapshot that cannot be built is a translator bug; keep serving
		// what the proxies have rather than pushing something partial.
		p.log.Error("building snapshots failed; keeping the previous ones", "err", err)
		return
	}
	// The proxy count each gateway's Manifest carries builds on its Ready
	// proxy pods (Kubernetes; YAML rarely lists proxy pods). Counted here,
	// beside the translator rather than in it, so the snapshot version stays
	// a hash of configuration alone.
	p.xds.SetProxyPods(provision.ReadyProxies(in.Pods))
	p.xds.Update(sets)
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
	p.log.Info("translated", "gateways", len(sets), "resources", resources, "duration", time.Since(start).Round(time.Microsecond))
}
