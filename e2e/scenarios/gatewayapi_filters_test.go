package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/harness"
)

// filtersYAML routes to plain Services whose "pods" are servers of this test
// process on loopback addresses, through every HTTPRoute filter, a retry
// and a timeout.
const filtersYAML = gatewayYAML + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: filters, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /redirect}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: example.com, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /moved}}
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-team, value: a}], remove: [x-secret]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: x-gw, value: infergate}]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: mirror, port: 80}}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /flaky}}]
    retry: {attempts: 1, codes: [503]}
    backendRefs: [{name: flaky, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: slow, port: 80}]
{{range .Services}}---
apiVersion: v1
kind: Service
metadata: {name: {{.Name}}, namespace: default}
spec:
  clusterIP: 10.0.0.{{.N}}
  ports: [{port: 80, targetPort: {{$.Port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: {{.Name}}-1, namespace: default, labels: {kubernetes.io/service-name: {{.Name}}}}
addressType: IPv4
ports: [{port: {{$.Port}}}]
endpoints:
{{range .IPs}}- addresses: [{{.}}]
  conditions: {ready: true}
{{end}}{{end}}`

type svcSpec struct {
	Name string
	N    int
	IPs  []string
}

// serveOn runs h on addr until the test ends.
func serveOn(t *testing.T, addr string, h http.HandlerFunc) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// TestGatewayAPIFilters drives redirects, rewrites, header modifiers, a
// mirror, a retry and a timeout from YAML through the control plane to a
// running proxy.
func TestGatewayAPIFilters(t *testing.T) {
	ipEcho, ipFail, ipMirror, ipSlow := "127.0.0.61", "127.0.0.62", "127.0.0.63", "127.0.0.64"
	port := harness.FreePortOn(t, ipEcho, ipFail, ipMirror, ipSlow)
	at := func(ip string) string { return fmt.Sprintf("%s:%d", ip, port) }
	var echoHits, failHits, mirrorHits atomic.Int32
	mirrored := make(chan string, 10)
	serveOn(t, at(ipEcho), func(w http.ResponseWriter, r *http.Request) {
		echoHits.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "team": r.Header.Get("X-Team"),
			"secret": r.Header.Get("X-Secret"), "body": string(b)})
	})
	serveOn(t, at(ipFail), func(w http.ResponseWriter, r *http.Request) {
		failHits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	serveOn(t, at(ipMirror), func(w http.ResponseWriter, r *http.Request) {
		mirrorHits.Add(1)
		b, _ := io.ReadAll(r.Body)
		mirrored <- r.URL.Path + " " + string(b)
	})
	serveOn(t, at(ipSlow), func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})

	gwPort := harness.FreePort(t, "127.0.0.1")
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	cpAdmin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	dir := t.TempDir()
	writeFile(t, dir, "filters.yaml", render(t, filtersYAML, map[string]any{
		"GatewayPort": gwPort, "Port": port,
		"Services": []svcSpec{
			{"echo", 11, []string{ipEcho}},
			{"flaky", 12, []string{ipFail, ipEcho}},
			{"mirror", 13, []string{ipMirror}},
			{"slow", 14, []string{ipSlow}},
		}}))
	harness.Start(t, "controlplane", bins.Path("controlplane"), "--config-dir", dir, "--xds-address", xdsAddr, "--admin-address", cpAdmin)
	harness.Start(t, "proxy", bins.Path("proxy"), "--xds-address", xdsAddr, "--gateway", gatewayName,
		"--listen-address", "127.0.0.1", "--admin-address", adminAddr)
	harness.WaitHTTP(context.Background(), t, "http://"+adminAddr+"/ready", syncTimeout)
	base := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	client := &http.Client{Timeout: requestTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	t.Run("redirect", func(t *testing.T) {
		resp, err := client.Get(base + "/redirect/a?x=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://example.com/moved/a?x=1" {
			t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("rewrite, headers and mirror", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/api/chat/completions", strings.NewReader(`{"model":"m"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Secret", "s")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if got["path"] != "/v1/chat/completions" || got["team"] != "a" || got["secret"] != "" || got["body"] != `{"model":"m"}` {
			t.Fatalf("upstream saw %v", got)
		}
		if resp.Header.Get("X-Gw") != "infergate" {
			t.Fatalf("response headers %v", resp.Header)
		}
		select {
		case m := <-mirrored:
			if m != `/v1/chat/completions {"model":"m"}` {
				t.Fatalf("mirror got %q", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no mirrored copy")
		}
	})
	t.Run("retry on the other endpoint", func(t *testing.T) {
		for range 10 {
			failHits.Store(0)
			echoHits.Store(0)
			resp, err := client.Post(base+"/flaky", "application/json", strings.NewReader(`{"model":"m"}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || echoHits.Load() != 1 || failHits.Load() > 1 {
				t.Fatalf("status %d, failing endpoint hit %d, good %d", resp.StatusCode, failHits.Load(), echoHits.Load())
			}
		}
	})
	t.Run("request timeout", func(t *testing.T) {
		start := time.Now()
		resp, err := client.Get(base + "/slow")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 504 || time.Since(start) > 3*time.Second {
			t.Fatalf("status %d after %s", resp.StatusCode, time.Since(start))
		}
	})
}
