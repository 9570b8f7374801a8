package bench

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/infergate/infergate/controlplane/fleet"
	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/fleetkeys"
	"github.com/infergate/infergate/dataplane/picker"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// The fleet exchange in the benchmark. Production proxies report the
// affinity keys they use and the prompts they sent where to the control
// plane, which serves each gateway's proxies the union of the keys per pool
// and every other proxy's sends (controlplane/fleet, dataplane/fleetkeys).
// The benchmark has no control plane, so a strategy with FleetKeys runs the
// control plane's aggregator on a loopback gRPC server and one fleetkeys
// client per in-process proxy, with the production report and push
// intervals in simulated time: keys, sends and scrapes travel the
// production path, over real gRPC streams (the proxies' pipelines tell
// each picker its pool's endpoints, as in production, so sends to any of
// them are merged).
//
// The intervals are scaled by the run's time scale, as the scrape interval
// is: at 0.25 wall seconds per simulated second, the production 5 ms
// between a proxy's reports and the control plane's pushes would be 20 ms
// of simulated time, and the other proxies' sends and scrapes would reach
// a proxy 4 times later, relative to the requests, than in production.

// proxyPools is one proxy's pools' fleet sides (fleetkeys.Pools), filled
// as the proxy builds its pickers.
type proxyPools struct {
	mu    sync.Mutex
	pools map[string]picker.Fleet
}

func (p *proxyPools) Fleets() map[string]picker.Fleet {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.pools)
}

// capture wraps a proxy's picker constructor to note each pool's fleet
// side (its cost model or prefix scorer).
func (p *proxyPools) capture(newPicker func(*config.Backend) picker.Picker) func(*config.Backend) picker.Picker {
	return func(b *config.Backend) picker.Picker {
		pk := newPicker(b)
		if s, ok := pk.(*picker.Scheduler); ok && s.Fleet() != nil {
			p.mu.Lock()
			if p.pools == nil {
				p.pools = map[string]picker.Fleet{}
			}
			p.pools[b.Name] = s.Fleet()
			p.mu.Unlock()
		}
		return pk
	}
}

// startFleetKeys serves an aggregator on loopback and connects a client
// for each proxy's pools, with the production intervals times timeScale
// (wall seconds per simulated second); stop ends them all.
func startFleetKeys(pools []*proxyPools, timeScale float64, logger *slog.Logger) (stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return serveFleetKeys(lis, pools, timeScale, logger), nil
}

// serveFleetKeys is startFleetKeys on a listener of the caller's.
func serveFleetKeys(lis net.Listener, pools []*proxyPools, timeScale float64, logger *slog.Logger) (stop func()) {
	srv := grpc.NewServer()
	fleet.NewService(fleet.NewAggregator(fleet.Options{PushEvery: scaled(fleetv1.KeysEvery, timeScale),
		SendsEvery: scaled(fleetv1.SendsEvery, timeScale)}), logger, nil).Register(srv)
	go func() { _ = srv.Serve(lis) }()
	fps := make([]fleetkeys.Pools, len(pools))
	for i, p := range pools {
		fps[i] = p
	}
	stopClients := StartFleetClients(lis.Addr().String(), gateway, fps, scaled(fleetkeys.DefaultReportEvery, timeScale),
		scaled(fleetkeys.DefaultKeysEvery, timeScale), nil, logger)
	return func() {
		stopClients()
		srv.Stop()
	}
}

// StartFleetClients connects a fleetkeys client for each proxy's pools
// (node "proxy-<i>" of gateway) to the fleet service at addr, reporting
// every reportEvery and keys every keysEvery; dial, when set, gives proxy
// i's dial options (nil: plaintext). stop ends them all. The control-plane
// benchmark drives the same clients against the control plane's process.
func StartFleetClients(addr, gateway string, pools []fleetkeys.Pools, reportEvery, keysEvery time.Duration,
	dial func(i int) []grpc.DialOption, logger *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, p := range pools {
		cfg := fleetkeys.Config{Addr: addr, NodeID: fmt.Sprintf("proxy-%d", i), Gateway: gateway,
			Pools: p, ReportEvery: reportEvery, KeysEvery: keysEvery, Logger: logger}
		if dial != nil {
			cfg.DialOptions = dial(i)
		}
		c := fleetkeys.New(cfg)
		wg.Go(func() { _ = c.Run(ctx) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// scaled is a simulated duration d in a run's wall time: d × timeScale
// (wall seconds per simulated second; 0 means 1), at least 1 ms when d is
// positive (a zero interval means "the default" to the components).
func scaled(d time.Duration, timeScale float64) time.Duration {
	if d <= 0 {
		return d
	}
	if timeScale <= 0 {
		timeScale = 1
	}
	return max(time.Duration(float64(d)*timeScale), time.Millisecond)
}
