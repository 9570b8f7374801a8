package main

// The fleet-exchange phase (issue #13): what the exchange of sends and
// scrapes between one gateway's proxies costs the control plane, by the
// number of proxies and the report/push interval. The control-plane flag
// --fleet-sends-push-interval is process-wide, so each interval gets a
// control-plane process of its own (this tree's binary, serving an empty
// --config-dir: the fleet service relays what the proxies report and does
// not consult the snapshot), which then serves the fleet streams alone:
// its CPU is the exchange's.
//
// Each simulated proxy is the proxy's own pieces in this process: the
// default picker profile (the cost model) picking among the gateway's
// pool's pods, its endpoints taking "scrapes" at the proxy's schedule,
// and the real fleetkeys client reporting and merging over its own gRPC
// connection to the control plane.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/infergate/infergate/dataplane/fleetkeys"
	"github.com/infergate/infergate/e2e/bench"
	"github.com/infergate/infergate/e2e/harness"
)

// fleetCell is one measured proxy count and interval.
type fleetCell struct {
	proxies  int
	interval time.Duration
	window   time.Duration
	// cpCores is the control plane's CPU over the window per second;
	// rx and tx the bytes per second the proxies' connections carried to
	// and from it (TCP payload: gRPC and HTTP/2 framing, no TLS).
	cpCores, rx, tx float64
	// pushes and reports are messages per second per proxy, received and
	// sent on its stream.
	pushes, reports float64
	// sendsIn are the sends per second all proxies reported, keysPerSend
	// their chain keys on average; merged the others' sends per second a
	// proxy merged, adopted the others' scrapes per second it took over.
	sendsIn, keysPerSend, merged, adopted float64
	// lags are, for sends merged in the window, the time from the pick
	// to the merge on another proxy.
	lags []time.Duration
	// benchCores is this process's CPU with the exchange on, baseCores
	// with the same picks and scrapes and no exchange (measured first).
	benchCores, baseCores float64
	// skipped are the sends the control plane's streams skipped because
	// they fell behind its buffer during the window.
	skipped float64
	// busy is the share of the machine's CPU time in use over the window,
	// by anything: near 1, the cell measured a saturated machine.
	busy float64
}

// fleetPlan is the phase's configuration (flags).
type fleetPlan struct {
	proxies              []int
	intervals            []time.Duration
	rate                 int
	promptTokens         int
	warmup, window, base time.Duration
	// profile, when set, is the path prefix of a CPU profile of the
	// control plane over each cell's window (<profile>-<proxies>-<interval>.pprof).
	profile string
}

// parseInts reads a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseDurations reads a comma-separated list of positive durations.
func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for f := range strings.SplitSeq(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not a positive duration", f)
		}
		out = append(out, d)
	}
	return out, nil
}

// fleetTarget is the gateway the k-th proxy count of an interval
// exchanges for, its first pool and the serving addresses of that pool's
// pods: a gateway of its own per count, so no stream catches up on the
// sends the previous count's proxies left in the control plane.
func (w *world) fleetTarget(k int) (gateway, pool string, addrs []string) {
	g := k % w.cfg.gateways
	for j := range w.cfg.podsPerPool {
		addrs = append(addrs, w.podIP(g, 0, j)+":8000")
	}
	return w.gateway(g), w.poolResource(g, 0), addrs
}

// fleetPhase measures every cell of plan for gateways of world w, each
// interval against a control plane of its own. The control planes run
// side by side (an idle one costs next to nothing) and each proxy count
// is measured at every interval in turn, so the cells compared differ in
// the interval and little else: the machine is shared, and other work's
// load changes over minutes.
func fleetPhase(ctx context.Context, plan fleetPlan, cpBinary string, w *world, log *slog.Logger) ([]*fleetCell, error) {
	dir, err := os.MkdirTemp("", "bench-controlplane-fleet-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cps := make([]*fleetCP, len(plan.intervals))
	for i, iv := range plan.intervals {
		cp, err := startFleetCP(ctx, cpBinary, iv, filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			return nil, fmt.Errorf("fleet control plane every %v: %w", iv, err)
		}
		defer cp.proc.Stop(5 * time.Second)
		cps[i] = cp
	}
	var cells []*fleetCell
	for k, n := range plan.proxies {
		gateway, pool, addrs := w.fleetTarget(k)
		for _, cp := range cps {
			c, err := fleetCellRun(ctx, plan, n, cp, gateway, pool, addrs, log)
			if err != nil {
				return nil, fmt.Errorf("%d proxies every %v: %w", n, cp.interval, err)
			}
			log.Info("fleet exchange measured", "proxies", n, "interval", cp.interval, "cp cores", fmt.Sprintf("%.3f", c.cpCores),
				"cp out KiB/s", int(c.tx/1024), "pushes/s/proxy", int(c.pushes), "lag p50", durationQuantile(c.lags, 0.5),
				"p99", durationQuantile(c.lags, 0.99), "machine busy", fmt.Sprintf("%.0f%%", 100*c.busy))
			cells = append(cells, c)
		}
	}
	return cells, nil
}

// fleetCP is a control-plane process serving the fleet exchange with a
// push interval of its own.
type fleetCP struct {
	interval    time.Duration
	addr, admin string
	proc        *harness.Process
}

// startFleetCP starts a control plane pushing sends at most every iv,
// serving an empty configuration directory under dir; its log goes there.
func startFleetCP(ctx context.Context, cpBinary string, iv time.Duration, dir string) (*fleetCP, error) {
	conf := filepath.Join(dir, "config")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "controlplane.log")
	cpLog, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// The child holds its own descriptor.
	defer cpLog.Close()
	cp := &fleetCP{interval: iv}
	if cp.addr, cp.admin, err = loopbackPorts(); err != nil {
		return nil, err
	}
	if cp.proc, err = harness.Launch(cpLog, nil, cpBinary, "--config-dir", conf, "--xds-address", cp.addr, "--admin-address", cp.admin,
		"--fleet-sends-push-interval", iv.String(), "--log-level", "warn"); err != nil {
		return nil, err
	}
	if err := waitUp(ctx, cp.admin, 30*time.Second); err != nil {
		cp.proc.Stop(5 * time.Second)
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w; its log:\n%s", err, b)
	}
	return cp, nil
}

// waitUp waits for the control plane's /metrics.
func waitUp(ctx context.Context, admin string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := scrape(admin, "process_cpu_seconds_total")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// fleetCellRun measures n proxies exchanging every iv: first their picks
// and scrapes alone (this process's baseline CPU), then with the fleet
// clients on.
func fleetCellRun(ctx context.Context, plan fleetPlan, n int, cp *fleetCP, gateway, pool string, addrs []string, log *slog.Logger) (*fleetCell, error) {
	iv, admin := cp.interval, cp.admin
	book := newLagBook()
	ps := make([]*fleetProxy, n)
	pools := make([]fleetkeys.Pools, n)
	for i := range ps {
		p, err := newFleetProxy(pool, addrs, book)
		if err != nil {
			return nil, err
		}
		ps[i], pools[i] = p, p
	}
	dctx, stopDrive := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopDrive()
	pr := newPrompts(plan.promptTokens)
	wg.Go(func() { drive(dctx, ps, plan.rate, pr) })

	c := &fleetCell{proxies: n, interval: iv, window: plan.window}
	if err := sleep(ctx, plan.warmup/2); err != nil {
		return nil, err
	}
	b0 := selfCPU()
	if err := sleep(ctx, plan.base); err != nil {
		return nil, err
	}
	c.baseCores = (selfCPU() - b0) / plan.base.Seconds()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	stop := bench.StartFleetClients(cp.addr, gateway, pools, iv, fleetkeys.DefaultKeysEvery,
		func(i int) []grpc.DialOption { return ps[i].wire.dialOptions() }, quiet)
	defer stop()
	// Every stream answered (its first push) before the warm-up counts.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < n; {
		if ps[i].wire.started.Load() {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("proxy %d had no push from the control plane within 30 s", i)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
	if err := sleep(ctx, plan.warmup); err != nil {
		return nil, err
	}

	type counts struct{ rx, tx, in, out, merged, adopted int64 }
	read := func() (s counts) {
		for _, p := range ps {
			s.rx += p.wire.rx.Load()
			s.tx += p.wire.tx.Load()
			s.in += p.wire.msgsIn.Load()
			s.out += p.wire.msgsOut.Load()
		}
		s.merged, s.adopted = book.merged.Load(), book.adopted.Load()
		return s
	}
	skipped0, err := scrape(admin, "infergate_controlplane_fleet_sends_skipped_total")
	if err != nil {
		return nil, err
	}
	cp0, err := cpuSeconds(cp.proc.Pid())
	if err != nil {
		return nil, err
	}
	if plan.profile != "" {
		var profiled sync.WaitGroup
		defer profiled.Wait()
		path := fmt.Sprintf("%s-%d-%v.pprof", plan.profile, n, iv)
		profiled.Go(func() {
			if err := cpuProfile(ctx, admin, plan.window, path); err != nil {
				log.Warn("fleet: no CPU profile", "path", path, "err", err)
			}
		})
	}
	s0, self0, t0 := read(), selfCPU(), time.Now()
	busy0, total0 := machineCPU()
	book.take()
	if err := sleep(ctx, plan.window); err != nil {
		return nil, err
	}
	cp1, err := cpuSeconds(cp.proc.Pid())
	if err != nil {
		return nil, err
	}
	s1, self1, secs := read(), selfCPU(), time.Since(t0).Seconds()
	busy1, total1 := machineCPU()
	if total1 > total0 {
		c.busy = (busy1 - busy0) / (total1 - total0)
	}
	lags, sent, keys := book.take()
	skipped1, err := scrape(admin, "infergate_controlplane_fleet_sends_skipped_total")
	if err != nil {
		return nil, err
	}
	per := func(v int64) float64 { return float64(v) / secs }
	c.window = time.Duration(secs * float64(time.Second))
	c.cpCores = (cp1 - cp0) / secs
	// The proxies' bytes out are the control plane's bytes in.
	c.rx, c.tx = per(s1.tx-s0.tx), per(s1.rx-s0.rx)
	c.pushes, c.reports = per(s1.in-s0.in)/float64(n), per(s1.out-s0.out)/float64(n)
	c.sendsIn = per(sent)
	if sent > 0 {
		c.keysPerSend = float64(keys) / float64(sent)
	}
	c.merged, c.adopted = per(s1.merged-s0.merged)/float64(n), per(s1.adopted-s0.adopted)/float64(n)
	c.lags = lags
	c.benchCores = (self1 - self0) / secs
	c.skipped = (skipped1 - skipped0) / secs
	return c, nil
}
