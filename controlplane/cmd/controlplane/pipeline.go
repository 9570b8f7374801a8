package main

import (
	"log/slog"
	"time"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/translate"
	"github.com/infergate/infergate/controlplane/xds"
)

// pipeline turns one set of inputs into snapshots and hands them to the xDS
// server: source → translate → snapshot → xds. Sources call apply from one
// goroutine at a time.
type pipeline struct {
	log  *slog.Logger
	xds  *xds.Server
	opts translate.Options
	// observe, when set, receives every translation (Kubernetes mode: the
	// status writer and NACK events).
	observe func(*translate.Inputs, *translate.Output)
}

func (p *pipeline) apply(in *translate.Inputs) {
	start := time.Now()
	out := translate.Translate(in, p.opts)
	if p.observe != nil {
		p.observe(in, out)
	}
	sets, err := snapshot.BuildAll(out)
	if err != nil {
		// A snapshot that cannot be built is a translator bug; keep serving
		// what the proxies have rather than pushing something partial.
		p.log.Error("building snapshots failed; keeping the previous ones", "err", err)
		return
	}
	p.xds.Update(sets)
	resources := 0
	for _, s := range sets {
		resources += s.Count()
	}
	p.log.Info("translated", "gateways", len(sets), "resources", resources, "duration", time.Since(start).Round(time.Microsecond))
}
