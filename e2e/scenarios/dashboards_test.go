package scenarios

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/infergate/infergate/e2e/deploycheck"
	"github.com/infergate/infergate/e2e/harness"
)

// queuedFleetYAML is one route to a one-pod pool with a wait queue, so a
// burst saturates it and requests wait in the proxy.
const queuedFleetYAML = gatewayYAML + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool
  namespace: default
  annotations:
    infergate.dev/picker-profile: |
      scorers: [{name: queue, weight: 2}, {name: kv-cache, weight: 2}]
      queue: {ttl: 20s}
spec:
  selector: {matchLabels: {app: sim}}
  targetPorts: [{number: {{.PodPort}}}]
`

// TestDashboardMetrics: every metric the chart's Grafana dashboards and the
// autoscaling examples query is served by a running proxy or control plane,
// after traffic that exercises each (successes, streams, a 400, a burst
// that saturates a pool with a wait queue). A renamed metric fails here.
func TestDashboardMetrics(t *testing.T) {
	dir := t.TempDir()
	podIP := "127.0.0.31"
	podPort := harness.FreePortOn(t, podIP)
	gatewayPort := harness.FreePort(t, "127.0.0.1")
	xds := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	admin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	cpAdmin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	writeFile(t, dir, "fleet.yaml", render(t, queuedFleetYAML, map[string]int{"GatewayPort": gatewayPort, "PodPort": podPort}))
	writePod(t, dir, 0, podIP)
	// One sequence at a time, in real time: a burst of requests queues in
	// the model server and saturates the pool.
	listen := fmt.Sprintf("%s:%d", podIP, podPort)
	harness.Start(t, "modelsim", bins.Path("modelsim"), "--listen", listen, "--model", model, "--max-num-seqs", "1")
	harness.WaitHTTP(context.Background(), t, "http://"+listen+"/health", syncTimeout)
	harness.Start(t, "controlplane", bins.Path("controlplane"), "--config-dir", dir, "--xds-address", xds, "--admin-address", cpAdmin)
	harness.WaitHTTP(context.Background(), t, "http://"+cpAdmin+"/readyz", syncTimeout)
	harness.Start(t, "proxy", bins.Path("proxy"), "--xds-address", xds, "--gateway", gatewayName,
		"--listen-address", "127.0.0.1", "--admin-address", admin)
	harness.WaitHTTP(context.Background(), t, "http://"+admin+"/ready", syncTimeout)

	chat := func(body string) (int, error) {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", gatewayPort), "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err
	}
	msg := func(stream bool, maxTokens int) string {
		return fmt.Sprintf(`{"model":%q,"stream":%t,"stream_options":{"include_usage":true},"max_tokens":%d,"messages":[{"role":"user","content":%q}]}`,
			model, stream, maxTokens, distinctPrompt("Count to ten."))
	}
	for _, stream := range []bool{false, true} {
		if code, err := chat(msg(stream, 4)); err != nil || code != 200 {
			t.Fatalf("chat (stream %v): %d %v", stream, code, err)
		}
	}
	if code, err := chat(`{"model":"` + model + `"}`); err != nil || code != 400 {
		t.Fatalf("a chat without messages: %d %v, want 400", code, err)
	}
	// A burst: one runs, the others wait in the model server until the
	// pool is saturated; the last ones then wait in the proxy's queue.
	var wg sync.WaitGroup
	for i := 0; i < 14; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, err := chat(msg(true, 60)); err != nil || code != 200 {
				t.Errorf("burst request: %d %v", code, err)
			}
		}()
		if i == 9 {
			harness.Eventually(t, syncTimeout, func() error {
				if s := gauge(t, "http://"+admin+"/metrics", "infergate_pool_saturation"); s < 1 {
					return fmt.Errorf("pool saturation %v, not yet saturated", s)
				}
				return nil
			})
		}
	}
	wg.Wait()

	served := map[string]bool{}
	for _, u := range []string{"http://" + admin + "/metrics", "http://" + cpAdmin + "/metrics"} {
		for name := range families(t, u) {
			served[name] = true
		}
	}
	if !served["infergate_proxy_queue_outcomes_total"] {
		t.Fatal("no request waited in the proxy's queue: the burst did not saturate the pool")
	}
	var queries []string
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "helm", "infergate", "dashboards", "*.json"))
	if len(files) == 0 {
		t.Fatal("no dashboards in the chart")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		exprs, err := deploycheck.DashboardExprs(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		queries = append(queries, exprs...)
	}
	examples, err := deploycheck.ExampleQueries(filepath.Join(repoRoot(t), "deploy", "examples", "autoscaling"))
	if err != nil {
		t.Fatal(err)
	}
	queries = append(queries, examples...)
	checked := map[string]bool{}
	for _, q := range queries {
		names, err := deploycheck.MetricNames(q)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, n := range names {
			checked[n] = true
			if !served[n] {
				t.Errorf("%s (in %q) is not served by the proxy or the control plane", n, q)
			}
		}
	}
	t.Logf("%d queries name %d metrics, all served", len(queries), len(checked))
}

// families returns the metric names a /metrics endpoint serves: each
// family, and for histograms and summaries the series PromQL selects
// (_bucket, _sum, _count).
func families(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		out[f[2]] = true
		switch f[3] {
		case "histogram":
			out[f[2]+"_bucket"], out[f[2]+"_sum"], out[f[2]+"_count"] = true, true, true
		case "summary":
			out[f[2]+"_sum"], out[f[2]+"_count"] = true, true
		}
	}
	return out
}

// gauge returns the largest sample of a metric at url (-1 when absent).
func gauge(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	v := -1.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		if x, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil && x > v {
			v = x
		}
	}
	return v
}
