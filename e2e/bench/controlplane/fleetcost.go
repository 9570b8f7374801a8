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
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/fleetkeys"
	"github.com/infergate/infergate/dataplane/picker"
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

// lagBook matches the sends the proxies merge to the picks that made
// them, by the send's deepest chain key (each prompt is unique up to it),
// and counts what the exchange carried.
type lagBook struct {
	mu        sync.Mutex
	pickedAt  map[uint64]int64 // deepest key → pick time, unix ns
	lags      []time.Duration
	sent      int64 // sends the proxies reported
	sentKeys  int64 // their chain keys
	merged    atomic.Int64
	adopted   atomic.Int64
	unmatched atomic.Int64
}

func newLagBook() *lagBook { return &lagBook{pickedAt: map[uint64]int64{}} }

func (b *lagBook) reported(ss []picker.Send) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range ss {
		if len(s.Keys) > 0 {
			b.pickedAt[s.Keys[len(s.Keys)-1]] = s.At
		}
		b.sent++
		b.sentKeys += int64(len(s.Keys))
	}
}

func (b *lagBook) mergedAt(ss []picker.Send, now int64) {
	b.merged.Add(int64(len(ss)))
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range ss {
		if len(s.Keys) == 0 {
			continue
		}
		at, ok := b.pickedAt[s.Keys[len(s.Keys)-1]]
		if !ok {
			b.unmatched.Add(1)
			continue
		}
		b.lags = append(b.lags, time.Duration(now-at))
	}
}

// take returns the lags recorded since the last take and the sends
// reported and their keys, and starts over.
func (b *lagBook) take() (lags []time.Duration, sent, keys int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lags, sent, keys = b.lags, b.sent, b.sentKeys
	b.lags, b.sent, b.sentKeys = nil, 0, 0
	return lags, sent, keys
}

// bookedFleet is a proxy's cost model as the fleetkeys client sees it,
// noting what goes through the exchange on the way.
type bookedFleet struct {
	picker.Fleet
	book *lagBook
}

func (f bookedFleet) SendsSince(cursor uint64, out []picker.Send) ([]picker.Send, uint64) {
	n := len(out)
	out, next := f.Fleet.SendsSince(cursor, out)
	f.book.reported(out[n:])
	return out, next
}

func (f bookedFleet) MergeSends(ss []picker.Send) {
	f.book.mergedAt(ss, time.Now().UnixNano())
	f.Fleet.MergeSends(ss)
}

func (f bookedFleet) MergeLoads(ls []picker.Load) int {
	n := f.Fleet.MergeLoads(ls)
	f.book.adopted.Add(int64(n))
	return n
}

// wireCount counts one proxy's connection: bytes over TCP and messages
// on its streams.
type wireCount struct {
	rx, tx          atomic.Int64
	msgsIn, msgsOut atomic.Int64
	// started is set by the first push received.
	started atomic.Bool
}

type countedConn struct {
	net.Conn
	c *wireCount
}

func (c countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.c.rx.Add(int64(n))
	return n, err
}

func (c countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.c.tx.Add(int64(n))
	return n, err
}

// TagRPC, HandleRPC, TagConn and HandleConn make wireCount a gRPC stats
// handler counting the messages of the proxy's streams.
func (w *wireCount) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (w *wireCount) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.InPayload:
		w.msgsIn.Add(1)
		w.started.Store(true)
	case *stats.OutPayload:
		w.msgsOut.Add(1)
	}
}
func (w *wireCount) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (w *wireCount) HandleConn(context.Context, stats.ConnStats)                       {}

func (w *wireCount) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(w),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return countedConn{Conn: c, c: w}, nil
		}),
	}
}

// fleetProxy is one simulated proxy of the gateway.
type fleetProxy struct {
	pool  string
	sched *picker.Scheduler
	eps   []*endpoints.Endpoint
	fleet bookedFleet
	wire  wireCount
}

// Fleets implements fleetkeys.Pools: the proxy's one pool.
func (p *fleetProxy) Fleets() map[string]picker.Fleet {
	return map[string]picker.Fleet{p.pool: p.fleet}
}

func newFleetProxy(pool string, addrs []string, book *lagBook) (*fleetProxy, error) {
	sched, err := picker.FromProfile(nil)
	if err != nil {
		return nil, err
	}
	if _, ok := sched.Fleet().(*picker.CostModel); !ok {
		return nil, fmt.Errorf("the default picker profile has no cost model: it exchanges no sends")
	}
	p := &fleetProxy{pool: pool, sched: sched, fleet: bookedFleet{Fleet: sched.Fleet(), book: book}}
	for _, a := range addrs {
		p.eps = append(p.eps, endpoints.New(endpoints.Spec{Address: a, Pod: a}))
	}
	return p, nil
}

// prompts makes the requests: 32 system prompts of half the tokens, each
// followed by a user message unique from its start, so every prompt's
// deepest chain key is its own.
type prompts struct {
	heads [][]byte
	tail  string
}

func newPrompts(tokens int) *prompts {
	chars := tokens * 4 // the picker's estimate: 4 bytes a token
	p := &prompts{tail: strings.Repeat("tell me more about the previous answer. ", chars/2/40+1)[:chars/2]}
	for g := range 32 {
		sys := fmt.Sprintf("group %d: ", g) + strings.Repeat("you are a helpful assistant. ", chars/2/29+1)
		p.heads = append(p.heads, fmt.Appendf(nil, `{"model":"m","stream":true,"messages":[{"role":"system","content":%q},{"role":"user","content":"request `, sys[:chars/2]))
	}
	return p
}

func (p *prompts) body(i int) []byte {
	b := append([]byte(nil), p.heads[i%len(p.heads)]...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, ": "...)
	b = append(b, p.tail...)
	return append(b, `"}]}`...)
}

// drive makes the gateway's picks, rate a second spread evenly over the
// proxies in turn, and its proxies' scrapes of the pool's endpoints, each
// proxy scraping each endpoint every 50 ms × proxies (the proxy's
// schedule: the servers see one proxy's scrape load) at staggered times,
// until ctx ends. A pick counts as a request sent and finished at once:
// nothing here waits on a server.
func drive(ctx context.Context, ps []*fleetProxy, rate int, pr *prompts) {
	n := len(ps)
	eps := len(ps[0].eps)
	scrapeRate := float64(eps) / 0.050 // scrapes a second, whatever the proxy count
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var picks, scrapes int
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		el := now.Sub(start).Seconds()
		for ; picks < int(el*float64(rate)); picks++ {
			p := ps[picks%n]
			req := &picker.Request{Model: "m", Body: pr.body(picks), MaxTokens: 256}
			if ep, err := p.sched.Pick(req, p.eps); err == nil {
				ep.Acquire(now)
				ep.Release()
			}
		}
		for ; scrapes < int(el*scrapeRate); scrapes++ {
			i := scrapes % n
			ep := ps[i].eps[(scrapes/n+i)%eps]
			ep.SetMetrics(&endpoints.Metrics{Waiting: float64(rand.IntN(8)), Running: float64(8 + rand.IntN(24)),
				KVCacheUsage: rand.Float64(), KVCapacity: 500_000, At: now})
		}
	}
}

// cpuSeconds is a process's user and system CPU from /proc/<pid>/stat
// (utime and stime, in clock ticks of 1/100 s: USER_HZ is 100 on every
// Linux this runs on, and Go cannot ask sysconf without cgo).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return (ut + st) / 100, nil
}

// machineCPU returns the machine's busy and total CPU time so far, in
// clock ticks (the "cpu" line of /proc/stat; idle and iowait are idle).
func machineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		total += x
		if i != 3 && i != 4 {
			busy += x
		}
	}
	return busy, total
}

// selfCPU is this process's user and system CPU in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
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
