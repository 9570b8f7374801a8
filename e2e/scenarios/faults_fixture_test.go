package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/e2e/harness"
)

// faultGateway is a control plane, one proxy and a pool of simulated
// replicas, each in a process of its own so that one can be killed,
// frozen or given broken metrics while the others serve.
type faultGateway struct {
	dir         string
	xdsAddr     string
	cpAdmin     string
	admin       string
	gatewayPort int
	podIPs      []string
	podPort     int
	sims        []*harness.Process
	simArgs     [][]string
	cp, proxy   *harness.Process
	client      *http.Client
}

// faultSetup configures startFaultGateway.
type faultSetup struct {
	replicas int
	// firstIP is the last octet of the first pod's 127.0.x.y address
	// (tests running one after the other use their own).
	subnet int
	// simArgs are every replica's modelsim flags; perReplica adds to one.
	simArgs    []string
	perReplica func(i int) []string
	proxyArgs  []string
	// pods are extra pods (IPs) the YAML names, served by the test.
	extraPods []string
	// profile is the pool's infergate.dev/picker-profile ("": none, the
	// default).
	profile string
}

// startFaultGateway starts the replicas, the control plane on the YAML
// directory and the proxy, and waits until the proxy serves.
func startFaultGateway(t *testing.T, s faultSetup) *faultGateway {
	t.Helper()
	ctx := context.Background()
	g := &faultGateway{dir: t.TempDir()}
	for i := range s.replicas {
		g.podIPs = append(g.podIPs, fmt.Sprintf("127.0.%d.%d", s.subnet, i+1))
	}
	g.podPort = harness.FreePortOn(t, append(append([]string{}, g.podIPs...), s.extraPods...)...)
	g.gatewayPort = harness.FreePort(t, "127.0.0.1")
	g.xdsAddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	g.admin = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	g.cpAdmin = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	fleet := render(t, fleetYAML, map[string]int{"GatewayPort": g.gatewayPort, "PodPort": g.podPort})
	if s.profile != "" {
		pool := []byte("  name: pool\n  namespace: default\n")
		if !bytes.Contains(fleet, pool) {
			t.Fatal("fleetYAML changed: no pool metadata to annotate")
		}
		fleet = bytes.Replace(fleet, pool, append(pool, "  annotations:\n    infergate.dev/picker-profile: "+strconv.Quote(s.profile)+"\n"...), 1)
	}
	writeFile(t, g.dir, "fleet.yaml", fleet)
	for i, ip := range append(append([]string{}, g.podIPs...), s.extraPods...) {
		writePod(t, g.dir, i, ip)
	}
	for i, ip := range g.podIPs {
		args := append([]string{"--listen", fmt.Sprintf("%s:%d", ip, g.podPort), "--model", model, "--log-level", "warn"}, s.simArgs...)
		if s.perReplica != nil {
			args = append(args, s.perReplica(i)...)
		}
		g.simArgs = append(g.simArgs, args)
		g.sims = append(g.sims, harness.Start(t, fmt.Sprintf("sim-%d", i), bins.Path("modelsim"), args...))
	}
	for _, ip := range g.podIPs {
		harness.WaitHTTP(ctx, t, fmt.Sprintf("http://%s:%d/health", ip, g.podPort), syncTimeout)
	}
	g.startControlPlane(t)
	harness.WaitHTTP(ctx, t, "http://"+g.cpAdmin+"/readyz", syncTimeout)
	g.proxy = harness.Start(t, "proxy", bins.Path("proxy"), append([]string{"--xds-address", g.xdsAddr, "--gateway", gatewayName,
		"--listen-address", "127.0.0.1", "--admin-address", g.admin, "--fleet-keys-interval", "0"}, s.proxyArgs...)...)
	harness.WaitHTTP(ctx, t, "http://"+g.admin+"/ready", syncTimeout)
	g.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}}
	t.Cleanup(g.client.CloseIdleConnections)
	return g
}

func (g *faultGateway) startControlPlane(t *testing.T) {
	g.cp = harness.Start(t, "controlplane", bins.Path("controlplane"),
		"--config-dir", g.dir, "--xds-address", g.xdsAddr, "--admin-address", g.cpAdmin)
}

// endpoint is replica i's address as the proxy names it.
func (g *faultGateway) endpoint(i int) string { return fmt.Sprintf("%s:%d", g.podIPs[i], g.podPort) }

// outcome is one request as the client saw it.
type outcome struct {
	status int
	served string
	// err is set for anything but a complete answer: a transport error,
	// an error status, a stream that ended without its [DONE].
	err error
	// cut is a response that started (a status came) and broke off.
	cut            bool
	started, ended time.Time
}

// chatReq sends one chat completion with a prompt no other request
// shares (prefix affinity must not decide where it goes) and reads the
// whole answer; a stream must end with "data: [DONE]".
func (g *faultGateway) chatReq(ctx context.Context, stream bool, maxTokens int, model string) outcome {
	body, _ := json.Marshal(map[string]any{
		"model": model, "stream": stream, "max_tokens": maxTokens,
		"messages": []map[string]string{{"role": "user", "content": distinctPrompt("Tell me something about faults.")}},
	})
	return g.post(ctx, body, stream)
}

func (g *faultGateway) post(ctx context.Context, body []byte, stream bool) (o outcome) {
	o.started = time.Now()
	defer func() { o.ended = time.Now() }()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", g.gatewayPort), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		o.err = err
		return o
	}
	defer resp.Body.Close()
	o.status, o.served = resp.StatusCode, resp.Header.Get(servedHeader)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		o.err = fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		return o
	}
	if !stream {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			o.err, o.cut = err, true
		}
		return o
	}
	sc := bufio.NewScanner(resp.Body)
	done := false
	for sc.Scan() {
		done = done || sc.Text() == "data: [DONE]"
	}
	switch {
	case sc.Err() != nil:
		o.err, o.cut = sc.Err(), true
	case !done:
		o.err, o.cut = errors.New("stream ended without [DONE]"), true
	}
	return o
}

// load runs workers sending requests (send) until stopped, keeping every
// outcome.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	out    []outcome
}

func startLoad(workers int, send func(ctx context.Context) outcome) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				o := send(ctx)
				if ctx.Err() != nil && o.err != nil {
					return // stopped mid-request: not an outcome
				}
				l.mu.Lock()
				l.out = append(l.out, o)
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *load) stop() []outcome {
	l.cancel()
	l.wg.Wait()
	return l.out
}

// endpointStatus reads the proxy's view of one endpoint.
func (g *faultGateway) endpointStatus(ctx context.Context, addr string) (endpoints.Status, error) {
	body, err := httpGet(ctx, "http://"+g.admin+"/endpoints")
	if err != nil {
		return endpoints.Status{}, err
	}
	var all []endpoints.Status
	if err := json.Unmarshal([]byte(body), &all); err != nil {
		return endpoints.Status{}, fmt.Errorf("/endpoints: %v", err)
	}
	for _, s := range all {
		if s.Address == addr {
			return s, nil
		}
	}
	return endpoints.Status{}, fmt.Errorf("/endpoints lacks %s", addr)
}

// metricValue sums the proxy's samples of a metric whose line starts
// with prefix (name and labels).
func (g *faultGateway) metricValue(ctx context.Context, prefix string) (float64, error) {
	body, err := httpGet(ctx, "http://"+g.admin+"/metrics")
	if err != nil {
		return 0, err
	}
	var sum float64
	for line := range strings.Lines(body) {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(strings.TrimSpace(line), ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum, nil
}

// share counts the successful outcomes per endpoint and returns the
// fraction each served.
func share(out []outcome) (map[string]float64, int) {
	n := 0
	per := map[string]int{}
	for _, o := range out {
		if o.err == nil {
			per[o.served]++
			n++
		}
	}
	fr := map[string]float64{}
	for ep, c := range per {
		fr[ep] = float64(c) / float64(max(n, 1))
	}
	return fr, n
}
