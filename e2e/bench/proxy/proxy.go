package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"syscall"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/config/configtest"
	"github.com/infergate/infergate/dataplane/http1"
	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/server"
	"github.com/infergate/infergate/dataplane/upstream"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

const (
	gateway = "bench/gw"
	pool    = gateway + "/inferencepool/bench/pool"
)

// runProxy serves the proxy's request path (server.Manager, the same code
// cmd/proxy runs once xDS delivered a config) on port, with one route to
// an InferencePool of the backend, until SIGTERM. mode is the client for
// the backend, srvMode the server for the load generator's connections.
// With picker set the pool asks that endpoint picker (ext_proc).
func runProxy(port uint32, backend, picker, profile string, mode upstream.HTTP1Mode, srvMode http1.Mode) error {
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	host, p, err := net.SplitHostPort(backend)
	if err != nil {
		return err
	}
	bp, _ := strconv.Atoi(p)
	eps := &snapshotv1.Endpoints{Name: pool + "/endpoints", Endpoints: []*snapshotv1.Endpoint{{Address: host, Port: uint32(bp), Pod: "bench/backend"}}}
	rs := []snapshotv1.Named{
		&snapshotv1.Listener{Name: gateway + "/http", Gateway: gateway, Port: port, Protocol: snapshotv1.Listener_HTTP},
		&snapshotv1.Route{Name: gateway + "/bench/route/0", Route: "bench/route", Listeners: []string{gateway + "/http"},
			Matches:  []*snapshotv1.RouteMatch{{Path: &snapshotv1.PathMatch{Type: snapshotv1.MatchType_PATH_PREFIX, Value: "/"}}},
			Backends: []*snapshotv1.BackendRef{{Backend: pool, Weight: 1}}},
		&snapshotv1.Backend{Name: pool, Kind: snapshotv1.Backend_INFERENCE_POOL, Source: "bench/pool",
			AppProtocol: snapshotv1.Backend_HTTP1, Endpoints: eps.Name},
		eps,
	}
	if picker != "" {
		rs = withPicker(rs, picker)
	}
	cfg, err := config.Compile(configtest.Resources(gateway, rs...))
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m := server.New(logger, server.Options{BindAddress: "127.0.0.1", HTTP1Server: srvMode,
		Pipeline: pipeline.Options{Upstream: upstream.Options{HTTP1: mode}}})
	if err := m.Apply(cfg); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	return m.Close(context.Background())
}
