package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/harness"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// scrape reads one unlabelled sample from a Prometheus text endpoint.
func scrape(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found at %s", name, addr)
}

func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}

// rssSampler keeps the largest resident memory the control plane reported.
type rssSampler struct {
	mu  sync.Mutex
	max float64
}

func (s *rssSampler) run(ctx context.Context, admin string) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		if v, err := scrape(admin, "process_resident_memory_bytes"); err == nil {
			s.mu.Lock()
			s.max = max(s.max, v)
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *rssSampler) peak() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

func run(ctx context.Context, cfg config, log *slog.Logger) (*results, error) {
	res := &results{cfg: cfg, started: time.Now(), loadBefore: loadAverage()}
	bins, cleanup, err := harness.Build()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	res.cpBinary = cfg.controlplane
	if res.cpBinary == "" {
		res.cpBinary = bins.Path("controlplane")
	}
	if cfg.fleetOnly {
		res.loadBeforeFleet = loadAverage()
		res.fleet, err = fleetPhase(ctx, cfg.fleet, res.cpBinary, &world{cfg: cfg}, log)
		res.finished = time.Now()
		return res, err
	}

	log.Info("starting kube-apiserver")
	c, err := cluster.Start(ctx, cluster.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	// The cluster's ready-made clients are limited to 5 requests/s.
	rc := rest.CopyConfig(c.Config)
	rc.QPS, rc.Burst = 2000, 4000
	fast := *c
	fast.Clientset = kubernetes.NewForConfigOrDie(rc)
	fast.Dynamic = dynamic.NewForConfigOrDie(rc)
	w := &world{cfg: cfg, c: &fast}

	t0 := time.Now()
	if err := w.create(ctx, 32, func(what string, n int) { log.Info("created", "what", what, "objects", n) }); err != nil {
		return nil, fmt.Errorf("fill the API server: %w", err)
	}
	res.fillTime = time.Since(t0)
	log.Info("API server filled", "took", res.fillTime.Round(time.Millisecond))

	const leaseNS = "infergate-system"
	if err := c.CreateNamespace(ctx, leaseNS); err != nil {
		return nil, err
	}
	xdsAddr, admin, err := loopbackPorts()
	if err != nil {
		return nil, err
	}
	logDir, err := os.MkdirTemp("", "bench-controlplane-")
	if err != nil {
		return nil, err
	}
	cpLog, err := os.Create(filepath.Join(logDir, "controlplane.log"))
	if err != nil {
		return nil, err
	}
	defer cpLog.Close()
	res.cpLog = cpLog.Name()

	// Simulated proxies connect in plaintext: this measures translation and
	// fan-out; TLS and token review cost once per stream, not per change.
	t0 = time.Now()
	cp, err := harness.Launch(cpLog, c.Env(), res.cpBinary,
		"--kubeconfig", c.Kubeconfig, "--xds-address", xdsAddr, "--admin-address", admin,
		"--debounce", cfg.debounce.String(), "--leader-election-namespace", leaseNS,
		"--xds-tls-secret=", "--xds-auth=false")
	if err != nil {
		return nil, err
	}
	defer cp.Stop(10 * time.Second)
	log.Info("control plane started", "binary", res.cpBinary, "admin", admin, "log", res.cpLog)
	pctx, stopProxies := context.WithCancel(ctx)
	defer stopProxies()
	f := startFleet(pctx, w, xdsAddr)
	defer f.wg.Wait()
	defer stopProxies()
	wantRoutes, wantEndpoints := cfg.routesPerGateway, w.endpointsPerGateway()
	last, err := until(ctx, f.all, 10*time.Minute, func(r snapshotv1.Resources) bool {
		routes, eps := counts(r)
		return routes == wantRoutes && eps == wantEndpoints
	})
	if err != nil {
		return nil, fmt.Errorf("initial sync: %w (control plane log: %s)", err, res.cpLog)
	}
	res.initialSync = last.Sub(t0)
	log.Info("initial sync", "all proxies complete after", res.initialSync.Round(time.Millisecond))

	var rss rssSampler
	sctx, stopSampler := context.WithCancel(ctx)
	defer stopSampler()
	go rss.run(sctx, admin)
	// Statuses are written after the first snapshot (thousands of objects
	// at the control plane's 50 writes/s): single changes are measured
	// once the leader has written them, as in a cluster past start-up.
	t1 := time.Now()
	logs := func() string { b, _ := os.ReadFile(res.cpLog); return string(b) }
	if err := waitLog(ctx, logs, "statuses written", 2*time.Second, 10*time.Minute); err != nil {
		return nil, fmt.Errorf("initial statuses: %w (control plane log: %s)", err, res.cpLog)
	}
	res.statusesWritten = time.Since(t1) + res.initialSync
	log.Info("initial statuses written", "after control plane start", res.statusesWritten.Round(time.Millisecond))
	if res.rssAfterSync, err = scrape(admin, "process_resident_memory_bytes"); err != nil {
		return nil, err
	}

	others := func(affected []*simProxy) []*simProxy {
		var out []*simProxy
		for _, p := range f.all {
			if p.gateway != affected[0].gateway {
				out = append(out, p)
			}
		}
		return out
	}
	// measure makes n changes one after another; do makes change i and
	// returns the proxies it affects and the state they must reach.
	measure := func(kind string, n int, do func(i int) ([]*simProxy, func(snapshotv1.Resources) bool, time.Time, error)) (*changeStats, error) {
		st := &changeStats{kind: kind, n: n}
		cpu0, err := scrape(admin, "process_cpu_seconds_total")
		if err != nil {
			return nil, err
		}
		for i := range n {
			before, beforeMf := map[*simProxy]uint64{}, map[*simProxy]uint64{}
			for _, p := range f.all {
				before[p], beforeMf[p] = p.bytes()
			}
			affected, holds, start, err := do(i)
			if err != nil {
				return nil, fmt.Errorf("%s change %d: %w", kind, i, err)
			}
			last, err := until(ctx, affected, cfg.timeout, holds)
			if err != nil {
				return nil, fmt.Errorf("%s change %d: %w", kind, i, err)
			}
			st.latencies = append(st.latencies, last.Sub(start))
			var got, gotMf, other uint64
			for _, p := range affected {
				all, mf := p.bytes()
				got += all - before[p]
				gotMf += mf - beforeMf[p]
			}
			for _, p := range others(affected) {
				all, _ := p.bytes()
				other += all - before[p]
			}
			st.bytesPerProxy = append(st.bytesPerProxy, float64(got)/float64(len(affected)))
			st.manifestBytesPerProxy = append(st.manifestBytesPerProxy, float64(gotMf)/float64(len(affected)))
			st.otherBytes += other
		}
		cpu1, err := scrape(admin, "process_cpu_seconds_total")
		if err != nil {
			return nil, err
		}
		st.cpuPerChange = (cpu1 - cpu0) / float64(n)
		log.Info("measured", "kind", kind, "changes", n, "p50", st.quantile(0.5), "p99", st.quantile(0.99))
		return st, nil
	}

	// replace writes obj over the stored version of its object and returns
	// when the write began (the read of the current version is not timed).
	replace := func(gvr schema.GroupVersionResource, obj *unstructured.Unstructured) (time.Time, error) {
		res := fast.Dynamic.Resource(gvr).Namespace(obj.GetNamespace())
		cur, err := res.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err != nil {
			return time.Time{}, err
		}
		obj.SetResourceVersion(cur.GetResourceVersion())
		start := time.Now()
		_, err = res.Update(ctx, obj, metav1.UpdateOptions{})
		return start, err
	}

	// Route changes: a new value of the rule's header filter.
	routes, err := measure("HTTPRoute rule changed", cfg.changes, func(i int) ([]*simProxy, func(snapshotv1.Resources) bool, time.Time, error) {
		g, r := i%cfg.gateways, (i*7)%cfg.routesPerGateway
		value := strconv.Itoa(i + 1)
		start, err := replace(httpRoutes, w.routeObject(g, r, value))
		if err != nil {
			return nil, nil, time.Time{}, err
		}
		name := w.routeResource(g, r)
		return f.byGateway[w.gateway(g)], func(s snapshotv1.Resources) bool { return routeHeader(s, name) == value }, start, nil
	})
	if err != nil {
		return nil, err
	}
	res.changes = append(res.changes, routes)

	// Pods becoming Ready, each first made not Ready (its own row). Both
	// take a measure of their own, so bytes count one change each.
	pod := func(i int) (g, k, j int) {
		return i % cfg.gateways, (i / cfg.gateways) % cfg.poolsPerGateway, i % cfg.podsPerPool
	}
	setReady := func(i int, ready bool) ([]*simProxy, func(snapshotv1.Resources) bool, time.Time, error) {
		g, k, j := pod(i)
		ip, eps := w.podIP(g, k, j), w.poolResource(g, k)
		start := time.Now()
		if _, err := fast.SetPodReady(ctx, w.ns(g), w.podName(k, j), ready); err != nil {
			return nil, nil, time.Time{}, err
		}
		return f.byGateway[w.gateway(g)], func(s snapshotv1.Resources) bool { return hasEndpoint(s, eps, ip) == ready }, start, nil
	}
	notReady, err := measure("Pod turned not Ready", cfg.changes, func(i int) ([]*simProxy, func(snapshotv1.Resources) bool, time.Time, error) {
		return setReady(i, false)
	})
	if err != nil {
		return nil, err
	}
	ready, err := measure("Pod became Ready", cfg.changes, func(i int) ([]*simProxy, func(snapshotv1.Resources) bool, time.Time, error) {
		return setReady(i, true)
	})
	if err != nil {
		return nil, err
	}
	res.changes = append(res.changes, ready, notReady)

	// Pool changes: a new queue weight in the picker profile annotation.
	pools, err := measure("InferencePool changed", cfg.changes, func(i int) ([]*simProxy, func(snapshotv1.Resources) bool, time.Time, error) {
		g, k := i%cfg.gateways, (i/cfg.gateways)%cfg.poolsPerGateway
		weight := i%900 + 2
		start, err := replace(inferencePools, w.poolObject(g, k, weight))
		if err != nil {
			return nil, nil, time.Time{}, err
		}
		name := w.poolResource(g, k)
		return f.byGateway[w.gateway(g)], func(s snapshotv1.Resources) bool { return queueWeight(s, name) == float64(weight) }, start, nil
	})
	if err != nil {
		return nil, err
	}
	res.changes = append(res.changes, pools)

	if res.churn, err = churn(ctx, cfg, w, &fast, f, admin, log); err != nil {
		return nil, err
	}
	if res.rssEnd, err = scrape(admin, "process_resident_memory_bytes"); err != nil {
		return nil, err
	}
	res.rssPeak = rss.peak()
	if !cfg.skipFleet {
		res.loadBeforeFleet = loadAverage()
		if res.fleet, err = fleetPhase(ctx, cfg.fleet, res.cpBinary, w, log); err != nil {
			return nil, err
		}
	}
	res.loadAfter = loadAverage()
	res.finished = time.Now()
	return res, nil
}

// loopbackPorts returns two free loopback addresses: a control plane's
// gRPC and admin ones.
func loopbackPorts() (grpcAddr, admin string, err error) {
	var ports [2]int
	for i := range ports {
		if ports[i], err = harness.FreePortOnAll("127.0.0.1"); err != nil {
			return "", "", err
		}
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), nil
}

// waitLog waits until logs() has a line containing what and then no new
// one for quiet; an error when that takes longer than timeout.
func waitLog(ctx context.Context, logs func() string, what string, quiet, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last, lastAt := -1, time.Now()
	for time.Now().Before(deadline) {
		n := strings.Count(logs(), what)
		if n != last {
			last, lastAt = n, time.Now()
		} else if n > 0 && time.Since(lastAt) >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("no quiet %q within %v", what, timeout)
}
