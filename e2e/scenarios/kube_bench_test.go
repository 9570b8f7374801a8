package scenarios

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/infergate/infergate/e2e/cluster"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/xdsclient"
)

const (
	benchRoutes  = 100
	benchPods    = 1000
	benchProxies = 100
)

const benchGatewayYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: infergate}
spec: {controllerName: infergate.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: {{.NS}}}
spec:
  gatewayClassName: infergate
  listeners: [{name: http, protocol: HTTP, port: 8080}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool, namespace: {{.NS}}}
spec:
  selector: {matchLabels: {app: bench}}
  targetPorts: [{number: 8000}]
`

const benchRouteYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r-{{.I}}, namespace: {{.NS}}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/r-{{.I}}}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
`

// simProxy is a simulated proxy: a delta xDS client that records when its
// complete state first matches a target.
type simProxy struct {
	mu     sync.Mutex
	want   func(routes, endpoints int) bool
	reach  chan struct{}
	closed bool
}

func (p *simProxy) update(r xdsclient.Resources) error {
	if _, ok := r.Complete(); !ok {
		return nil
	}
	endpoints := 0
	for _, m := range r[snapshotv1.TypeEndpoints] {
		if e, ok := m.Message.(*snapshotv1.Endpoints); ok {
			endpoints += len(e.GetEndpoints())
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.want != nil && !p.closed && p.want(len(r[snapshotv1.TypeRoute]), endpoints) {
		p.closed = true
		close(p.reach)
	}
	return nil
}

// expect arms the proxy for the next target; the returned channel closes
// once a complete state meets it (the client ACKs that state right after).
func (p *simProxy) expect(want func(routes, endpoints int) bool) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.want, p.reach, p.closed = want, make(chan struct{}), false
	return p.reach
}

// BenchmarkKubeApply measures, on a real API server, the time from applying
// 100 HTTPRoutes and 1,000 ready pods to all of 100 simulated proxies holding
// (and ACKing) the complete result, then the time for 100 pods turning
// not-ready to reach them all; it reports the control plane's CPU seconds and
// resident memory. Run with -benchtime=1x: one iteration takes tens of
// seconds.
func BenchmarkKubeApply(b *testing.B) {
	ctx := context.Background()
	c := cluster.StartT(b, cluster.Options{})
	// The cluster's ready-made clients are limited to 5 requests/s.
	rc := rest.CopyConfig(c.Config)
	rc.QPS, rc.Burst = 1000, 2000
	fastCluster := *c
	fastCluster.Clientset = kubernetes.NewForConfigOrDie(rc)
	fastCluster.Dynamic = dynamic.NewForConfigOrDie(rc)
	const leaseNS = "infergate-system"
	if err := c.CreateNamespace(ctx, leaseNS); err != nil {
		b.Fatal(err)
	}
	// Simulated proxies connect in plaintext: this measures translation and
	// fan-out; TLS + TokenReview cost once per stream, not per update.
	r := startReplica(b, "cp", c, leaseNS, "--xds-tls-secret=", "--xds-auth=false")
	eventually(b, func() error {
		if !strings.Contains(r.proc.Logs(), "informer caches synced") {
			return fmt.Errorf("caches not synced")
		}
		return nil
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	for i := 0; i < b.N; i++ {
		ns := fmt.Sprintf("bench-%d", i)
		if err := c.CreateNamespace(ctx, ns); err != nil {
			b.Fatal(err)
		}
		applyYAML(ctx, b, c, benchGatewayYAML, map[string]string{"NS": ns})

		proxyCtx, stopProxies := context.WithCancel(ctx)
		proxies := make([]*simProxy, benchProxies)
		var wg sync.WaitGroup
		for j := range proxies {
			p := &simProxy{}
			proxies[j] = p
			cl := xdsclient.New(xdsclient.Config{
				Addr: r.xds, NodeID: fmt.Sprintf("sim-%d-%d", i, j), Gateway: ns + "/gw",
				Handler: xdsclient.HandlerFunc(p.update), Logger: quiet,
			})
			wg.Add(1)
			go func() { defer wg.Done(); _ = cl.Run(proxyCtx) }()
		}
		waitAll := func(want func(routes, endpoints int) bool) func() {
			chans := make([]<-chan struct{}, len(proxies))
			for j, p := range proxies {
				chans[j] = p.expect(want)
			}
			return func() {
				deadline := time.After(5 * time.Minute)
				for _, ch := range chans {
					select {
					case <-ch:
					case <-deadline:
						b.Fatal("proxies did not converge within 5 minutes")
					}
				}
			}
		}
		wait := waitAll(func(routes, _ int) bool { return routes == 0 })
		wait()

		cpu0 := scrapeMetric(b, r.admin, "process_cpu_seconds_total")
		wait = waitAll(func(routes, endpoints int) bool { return routes == benchRoutes && endpoints == benchPods })
		t0 := time.Now()
		g := newLimitGroup(16)
		for k := 0; k < benchRoutes; k++ {
			manifest := string(render(b, benchRouteYAML, map[string]any{"NS": ns, "I": k}))
			g.Go(func() error { return applyManifest(ctx, &fastCluster, manifest) })
		}
		for k := 0; k < benchPods; k++ {
			g.Go(func() error {
				ip := fmt.Sprintf("10.%d.%d.%d", i+1, k/250, k%250+1)
				_, err := fastCluster.CreatePod(ctx, ns, fmt.Sprintf("p-%d", k), map[string]string{"app": "bench"}, ip, true)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		applied := time.Since(t0)
		wait()
		converged := time.Since(t0)

		wait = waitAll(func(routes, endpoints int) bool { return endpoints == benchPods-100 })
		t1 := time.Now()
		for k := 0; k < 100; k++ {
			g.Go(func() error {
				_, err := fastCluster.SetPodReady(ctx, ns, fmt.Sprintf("p-%d", k), false)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		churnWrites := time.Since(t1)
		wait()
		churn := time.Since(t1)
		cpu := scrapeMetric(b, r.admin, "process_cpu_seconds_total") - cpu0
		rss := scrapeMetric(b, r.admin, "process_resident_memory_bytes")
		stopProxies()
		wg.Wait()

		b.ReportMetric(applied.Seconds(), "apply-s")
		b.ReportMetric(converged.Seconds(), "apply-to-all-acked-s")
		b.ReportMetric((converged - applied).Seconds(), "last-write-to-all-acked-s")
		b.ReportMetric(churn.Seconds(), "100-not-ready-to-all-acked-s")
		b.ReportMetric((churn - churnWrites).Seconds(), "last-not-ready-to-all-acked-s")
		b.ReportMetric(cpu, "cp-cpu-s")
		b.ReportMetric(rss/(1<<20), "cp-rss-MiB")
		b.Logf("%d routes + %d pods, %d proxies: API writes took %v, all proxies complete after %v; 100 pods not ready → all proxies %v; control plane %.1f CPU-s, RSS %.0f MiB",
			benchRoutes, benchPods, benchProxies, applied.Round(time.Millisecond), converged.Round(time.Millisecond), churn.Round(time.Millisecond), cpu, rss/(1<<20))
	}
}

// scrapeMetric reads one unlabelled sample from a Prometheus text endpoint.
func scrapeMetric(t testing.TB, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not found at %s", name, addr)
	return 0
}

// limitGroup runs functions with bounded concurrency and keeps the first
// error.
type limitGroup struct {
	wg    sync.WaitGroup
	sem   chan struct{}
	mu    sync.Mutex
	first error
}

func newLimitGroup(n int) *limitGroup { return &limitGroup{sem: make(chan struct{}, n)} }

func (g *limitGroup) Go(f func() error) {
	g.sem <- struct{}{}
	g.wg.Add(1)
	go func() {
		defer func() { <-g.sem; g.wg.Done() }()
		if err := f(); err != nil {
			g.mu.Lock()
			if g.first == nil {
				g.first = err
			}
			g.mu.Unlock()
		}
	}()
}

func (g *limitGroup) Wait() error {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.first
}
