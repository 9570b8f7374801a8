package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/config/configtest"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/server"
	"github.com/infergate/infergate/proto/freeport"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

const (
	gateway  = "bench/gw"
	poolName = gateway + "/inferencepool/bench/pool"
)

// Objectives the workloads send in x-gateway-inference-objective, with the
// priority an InferenceObjective would give them.
var objectives = map[string]int32{"critical": 1, "standard": 0, "sheddable": -1}

// proxySetup is what the proxies of a cell are built from.
type proxySetup struct {
	addrs []string
	// pickerOf returns proxy i's PickerFor (nil: the pool's own profile).
	pickerOf func(i int) func(*config.Backend) picker.Picker
	queue    *snapshotv1.WaitQueue
	// scrapeInterval is a single proxy's per-endpoint scrape interval;
	// each proxy is told how many proxies share the servers.
	scrapeInterval time.Duration
	// configure, when set, edits the snapshot resources before compiling.
	configure func([]snapshotv1.Named) ([]snapshotv1.Named, error)
	logger    *slog.Logger
}

// poolConfig compiles a gateway with one HTTP listener on port routing
// everything to an InferencePool of addrs, with the criticality objectives
// and the wait queue when queue is set.
func poolConfig(port uint32, ps *proxySetup) (*config.Config, error) {
	addrs, queue := ps.addrs, ps.queue
	eps := &snapshotv1.Endpoints{Name: poolName + "/endpoints"}
	for _, a := range addrs {
		host, p, err := net.SplitHostPort(a)
		if err != nil {
			return nil, err
		}
		pn, _ := strconv.Atoi(p)
		eps.Endpoints = append(eps.Endpoints, &snapshotv1.Endpoint{Address: host, Port: uint32(pn), Pod: "bench/" + a, EngineType: "vllm"})
	}
	profile := picker.DefaultProfile()
	profile.Queue = queue
	rs := []snapshotv1.Named{
		&snapshotv1.Listener{Name: gateway + "/http", Gateway: gateway, Port: port, Protocol: snapshotv1.Listener_HTTP},
		&snapshotv1.Route{Name: gateway + "/bench/route/0", Route: "bench/route", Listeners: []string{gateway + "/http"},
			Matches:  []*snapshotv1.RouteMatch{{Path: &snapshotv1.PathMatch{Type: snapshotv1.MatchType_PATH_PREFIX, Value: "/"}}},
			Backends: []*snapshotv1.BackendRef{{Backend: poolName, Weight: 1}}},
		&snapshotv1.Backend{Name: poolName, Kind: snapshotv1.Backend_INFERENCE_POOL, Source: "bench/pool",
			AppProtocol: snapshotv1.Backend_HTTP1, Endpoints: eps.Name, Picker: profile, DefaultEngineType: "vllm"},
		eps,
	}
	for name, prio := range objectives {
		rs = append(rs, &snapshotv1.ModelRule{Name: gateway + "/inferenceobjective/bench/" + name, Pool: poolName,
			Objective: name, Priority: prio})
	}
	if ps.configure != nil {
		var err error
		if rs, err = ps.configure(rs); err != nil {
			return nil, err
		}
	}
	return config.Compile(configtest.Resources(gateway, rs...))
}

// proxy is one in-process data plane (server.Manager) with its own
// endpoint registry, scrapers and picker state — what one proxy pod holds.
type proxy struct {
	m   *server.Manager
	url string
}

// startProxies starts n proxies as ps says.
func startProxies(n int, ps *proxySetup) ([]*proxy, error) {
	var out []*proxy
	for i := range n {
		port, err := freePort()
		if err != nil {
			closeProxies(out)
			return nil, err
		}
		cfg, err := poolConfig(port, ps)
		if err != nil {
			closeProxies(out)
			return nil, err
		}
		opts := server.Options{BindAddress: "127.0.0.1",
			Pipeline: pipeline.Options{Endpoints: endpoints.Options{Interval: ps.scrapeInterval, Proxies: n}}}
		if ps.pickerOf != nil {
			opts.Pipeline.PickerFor = ps.pickerOf(i)
		}
		m := server.New(ps.logger, opts)
		if err := m.Apply(cfg); err != nil {
			closeProxies(out)
			return nil, fmt.Errorf("apply: %w", err)
		}
		out = append(out, &proxy{m: m, url: fmt.Sprintf("http://127.0.0.1:%d", port)})
	}
	return out, nil
}

func closeProxies(ps []*proxy) {
	for _, p := range ps {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = p.m.Close(ctx)
		cancel()
	}
}

func freePort() (uint32, error) {
	port, err := freeport.On()
	return uint32(port), err
}
