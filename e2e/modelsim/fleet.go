package modelsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/infergate/infergate/e2e/modelsim/engine"
)

// FleetConfig describes a set of replicas hosted by one process.
type FleetConfig struct {
	Config
	// Replicas listen on consecutive loopback addresses starting at Address
	// (default 127.0.0.11), all on Port (default 8000; 0 = a random port each).
	Replicas int
	Address  string
	Port     *int
	// Listen, when set, lists the addresses explicitly (overrides the above);
	// "127.0.0.1:0" picks a random port.
	Listen []string
	// NamePrefix names replicas <prefix>-<i>; default sim-<ip>-<port>.
	NamePrefix string
	// ShutdownTimeout bounds how long Close waits for in-flight requests (default 5 s).
	ShutdownTimeout time.Duration
	// Overrides, when set, change replica i (in listen order) from Config;
	// replicas beyond the list keep Config.
	Overrides []ReplicaOverride
}

// Fleet is a running set of replicas sharing one simulated clock.
type Fleet struct {
	replicas []*Replica
	servers  []*http.Server
	cancel   context.CancelFunc
	timeout  time.Duration
	wg       sync.WaitGroup
	once     sync.Once
	err      error
}

// Port returns p as a *int for FleetConfig.Port.
func Port(p int) *int { return &p }

func (fc FleetConfig) addresses() ([]string, error) {
	if len(fc.Listen) > 0 {
		return fc.Listen, nil
	}
	n := max(fc.Replicas, 1)
	addr := fc.Address
	if addr == "" {
		addr = "127.0.0.11"
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil || !ip.Is4() {
		return nil, fmt.Errorf("address %q: want an IPv4 address", addr)
	}
	port := 8000
	if fc.Port != nil {
		port = *fc.Port
	}
	out := make([]string, n)
	for i := range n {
		out[i] = netip.AddrPortFrom(ip, uint16(port)).String()
		ip = ip.Next()
	}
	return out, nil
}

// StartFleet listens on every address, then starts the engines and servers.
// The fleet stops when ctx is done or Close is called.
func StartFleet(ctx context.Context, fc FleetConfig) (*Fleet, error) {
	addrs, err := fc.addresses()
	if err != nil {
		return nil, err
	}
	cfg, err := fc.Config.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(fc.Overrides) > len(addrs) {
		return nil, fmt.Errorf("%d replica overrides for %d replicas", len(fc.Overrides), len(addrs))
	}
	cfgs := make([]Config, len(addrs))
	for i := range cfgs {
		if cfgs[i], err = fc.replicaConfig(i, cfg); err != nil {
			return nil, err
		}
	}
	clock := engine.NewClock(cfg.TimeScale)
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen %s: %w", a, err)
		}
		lns = append(lns, ln)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &Fleet{cancel: cancel, timeout: fc.ShutdownTimeout}
	if f.timeout <= 0 {
		f.timeout = 5 * time.Second
	}
	for i, ln := range lns {
		addr := ln.Addr().(*net.TCPAddr)
		name := fmt.Sprintf("sim-%s-%d", addr.IP, addr.Port)
		if fc.NamePrefix != "" {
			name = fc.NamePrefix + "-" + strconv.Itoa(i)
		}
		rcfg := cfgs[i]
		rcfg.Logger = cfg.Logger.With("replica", name)
		r, err := NewReplica(name, rcfg, clock)
		if err != nil {
			cancel()
			closeAll()
			return nil, err
		}
		r.addr = ln.Addr().String()
		if err := r.enableKVEvents(runCtx, addr.IP.String()); err != nil {
			cancel()
			closeAll()
			return nil, fmt.Errorf("replica %s: %w", name, err)
		}
		srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
		f.replicas = append(f.replicas, r)
		f.servers = append(f.servers, srv)
		f.wg.Add(2)
		go func() { defer f.wg.Done(); r.Run(runCtx) }()
		go func() {
			defer f.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				rcfg.Logger.Error("serve", "err", err)
			}
		}()
		rcfg.Logger.Info("listening", "addr", r.addr, "model", cfg.modelNames()[0], "engine", cfg.Engine)
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = f.Close()
		case <-runCtx.Done():
		}
	}()
	return f, nil
}

// Len is the number of replicas.
func (f *Fleet) Len() int { return len(f.replicas) }

// Replica returns replica i (0-based, in listen order).
func (f *Fleet) Replica(i int) *Replica { return f.replicas[i] }

// Replicas returns all replicas.
func (f *Fleet) Replicas() []*Replica { return append([]*Replica(nil), f.replicas...) }

// Addrs returns host:port per replica.
func (f *Fleet) Addrs() []string {
	out := make([]string, len(f.replicas))
	for i, r := range f.replicas {
		out[i] = r.Addr()
	}
	return out
}

// URLs returns http://host:port per replica.
func (f *Fleet) URLs() []string {
	out := make([]string, len(f.replicas))
	for i, r := range f.replicas {
		out[i] = r.URL()
	}
	return out
}

// Stats returns every replica's stats, in replica order.
func (f *Fleet) Stats() []ReplicaStats {
	out := make([]ReplicaStats, len(f.replicas))
	for i, r := range f.replicas {
		out[i] = r.Stats()
	}
	return out
}

// ByName finds a replica by the name it reports in ReplicaHeader.
func (f *Fleet) ByName(name string) *Replica {
	for _, r := range f.replicas {
		if r.name == name {
			return r
		}
	}
	return nil
}

// Close stops accepting connections, lets in-flight requests finish (up to
// ShutdownTimeout), then stops the engines; pending requests fail with 503.
func (f *Fleet) Close() error {
	f.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, len(f.servers))
		for i, s := range f.servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Shutdown(ctx)
			}()
		}
		// Engines keep running during Shutdown so streams can complete; if the
		// timeout hits, stopping them ends the remaining streams.
		go func() { <-ctx.Done(); f.cancel() }()
		wg.Wait()
		f.cancel()
		for _, s := range f.servers {
			_ = s.Close()
		}
		f.wg.Wait()
		f.err = errors.Join(errs...)
	})
	return f.err
}
