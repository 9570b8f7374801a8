package main

import (
	"errors"
	"log/slog"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/server"
	"github.com/infergate/infergate/proto/xdsclient"
)

// configHandler is the proxy's xDS handler: it compiles every complete
// snapshot and serves it, keeping the running config when a snapshot is
// incomplete, unchanged or bad (a NACK). Before any of that it applies the
// Manifest's proxy count to the scrapers: a count change re-sends the
// Manifest alone at the same version, which the version check below would
// otherwise skip.
func configHandler(mgr *server.Manager, logger *slog.Logger) xdsclient.HandlerFunc {
	return func(res xdsclient.Resources) error {
		if mf := res.Manifest(); mf != nil {
			mgr.Endpoints().SetProxies(int(mf.GetProxyCount()))
		}
		cfg, err := config.Compile(res)
		if errors.Is(err, config.ErrIncomplete) {
			// Part of a snapshot: accept what arrived and wait for the rest;
			// the running config stays in place.
			logger.Debug("snapshot incomplete, waiting for the rest", "reason", err)
			return nil
		}
		if err != nil {
			logger.Warn("rejecting snapshot, keeping the last good config", "err", err)
			return err
		}
		if cur := mgr.Config(); cur != nil && cur.Version == cfg.Version {
			// A resource of the next snapshot arrived before its manifest,
			// or only the proxy count changed: the manifest still names
			// the running config.
			return nil
		}
		if err := mgr.Apply(cfg); err != nil {
			logger.Warn("applying snapshot failed, keeping the last good config", "version", cfg.Version, "err", err)
			return err
		}
		return nil
	}
}
