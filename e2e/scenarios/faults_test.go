package scenarios

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/harness"
)

// The fault suite: real binaries on loopback, one fault each, asserting
// what issue #16 promises — faults lose nothing, clients cannot steer or
// break the fleet. TestFaultBadMetrics is in faults_metrics_test.go.

// TestFaultControlPlaneRestart: the control plane is killed under steady
// load and comes back with a changed world; no request fails, and the
// proxy has the change within 2 s of the control plane's return.
func TestFaultControlPlaneRestart(t *testing.T) {
	g := startFaultGateway(t, faultSetup{replicas: 3, subnet: 80, simArgs: []string{"--time-scale", "0.1"}})
	ctx := context.Background()
	l := startLoad(4, func(ctx context.Context) outcome { return g.chatReq(ctx, false, 8, model) })
	time.Sleep(300 * time.Millisecond)
	g.cp.Kill()
	// Down long enough for the proxy's reconnect backoff to reach its cap.
	time.Sleep(3 * time.Second)
	removeFile(t, g.dir, podFile(2)) // the change the proxy must pick up
	g.startControlPlane(t)
	harness.WaitHTTP(ctx, t, "http://"+g.cpAdmin+"/readyz", syncTimeout)
	back := time.Now()
	gone := g.endpoint(2)
	var synced time.Duration
	harness.Eventually(t, syncTimeout, func() error {
		body, err := httpGet(ctx, "http://"+g.admin+"/config")
		if err != nil {
			return err
		}
		if strings.Contains(body, gone) {
			return fmt.Errorf("the proxy still routes to %s", gone)
		}
		synced = time.Since(back)
		return nil
	})
	out := l.stop()
	failed := 0
	for _, o := range out {
		if o.err != nil {
			failed++
			t.Errorf("request failed across the control-plane restart: %v", o.err)
		}
	}
	t.Logf("%d requests, %d failed; proxy in sync %v after the control plane was ready again", len(out), failed, synced.Round(time.Millisecond))
	if synced > 2*time.Second {
		t.Errorf("the proxy took %v to sync with the restarted control plane (want ≤ 2 s)", synced)
	}
}

// TestFaultReplicaKilled: a replica is killed (SIGKILL) under streaming
// load. Requests not yet sent to it do not fail (one picked for it in the
// moment before the proxy noticed goes elsewhere: nothing was sent); it is
// ejected within one scrape interval; the streams it had started are
// errors to their clients and in the proxy's metrics.
func TestFaultReplicaKilled(t *testing.T) {
	g := startFaultGateway(t, faultSetup{replicas: 3, subnet: 81, simArgs: []string{"--time-scale", "0.5"}})
	ctx := context.Background()
	l := startLoad(24, func(ctx context.Context) outcome { return g.chatReq(ctx, true, 48, model) })
	time.Sleep(1500 * time.Millisecond)
	// Kill a replica the proxy has streams open on: which ones the picker
	// uses is its business (replica 0 was once a safe guess and then had
	// none at the moment of the kill).
	vi := -1
	harness.Eventually(t, 5*time.Second, func() error {
		for i := range g.sims {
			st, err := g.endpointStatus(ctx, g.endpoint(i))
			if err != nil {
				return err
			}
			if st.InFlight >= 2 {
				vi = i
				return nil
			}
		}
		return fmt.Errorf("no replica has 2 streams open")
	})
	victim := g.endpoint(vi)
	g.sims[vi].Kill()
	killed := time.Now()
	var ejected time.Duration
	harness.Eventually(t, 5*time.Second, func() error {
		st, err := g.endpointStatus(ctx, victim)
		if err != nil {
			return err
		}
		if st.EjectedForMs == nil {
			return fmt.Errorf("%s not ejected", victim)
		}
		ejected = time.Since(killed)
		return nil
	})
	time.Sleep(1500 * time.Millisecond)
	out := l.stop()
	var cut, before, after, ok int
	for _, o := range out {
		switch {
		case o.err == nil:
			ok++
		case o.served == victim && o.started.Before(killed):
			// Sent to it before it died: lost with it, reported as such.
			before++
			if o.cut {
				cut++
			}
		default:
			after++
			t.Errorf("request failed that the dead replica had not taken: served by %q, started %v after the kill: %v",
				o.served, o.started.Sub(killed).Round(time.Millisecond), o.err)
		}
	}
	cutMetric, err := g.metricValue(ctx, `inference_objective_request_error_total{error_code="stream_cut"`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests: %d ok, %d lost with the replica (%d of them cut streams), %d others failed; ejected %v after the kill; proxy counts %v cut streams",
		len(out), ok, before, cut, after, ejected.Round(time.Millisecond), cutMetric)
	if cut == 0 {
		t.Error("no stream was cut: the kill came between streams, the test shows nothing")
	}
	if int(cutMetric) != cut {
		t.Errorf("the clients saw %d cut streams, the proxy's metrics count %v", cut, cutMetric)
	}
	// One scrape interval (50 ms), plus what polling the admin API and a
	// loaded machine add.
	if ejected > 50*time.Millisecond+250*time.Millisecond {
		t.Errorf("ejected %v after the kill (want within one scrape interval, 50 ms, plus 250 ms slack)", ejected)
	}
}

// TestFaultReplicaFrozen: a replica stops (SIGSTOP) under load. Its
// requests end with 504 (or, for a stream already under way, a cut)
// within the configured timeouts; requests to the others all succeed.
func TestFaultReplicaFrozen(t *testing.T) {
	const timeout = 2 * time.Second
	g := startFaultGateway(t, faultSetup{replicas: 3, subnet: 82, simArgs: []string{"--time-scale", "0.2"},
		proxyArgs: []string{"--upstream-first-byte-timeout", timeout.String(), "--upstream-idle-timeout", timeout.String()}})
	ctx := context.Background()
	frozen := g.endpoint(0)
	l := startLoad(16, func(ctx context.Context) outcome { return g.chatReq(ctx, rand2(), 32, model) })
	time.Sleep(time.Second)
	if err := g.sims[0].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	t.Cleanup(func() { _ = g.sims[0].Signal(syscall.SIGCONT) })
	time.Sleep(2*timeout + time.Second)
	out := l.stop()
	var timedOut, cut, others int
	var slowest time.Duration
	for _, o := range out {
		if o.err == nil {
			continue
		}
		if o.served != frozen {
			others++
			t.Errorf("a request not served by the frozen replica failed: %v (served by %q)", o.err, o.served)
			continue
		}
		switch {
		case o.status == http.StatusGatewayTimeout:
			timedOut++
		case o.cut:
			cut++
		default:
			t.Errorf("a request to the frozen replica ended with %v, want 504 or a cut stream", o.err)
		}
	}
	// Each of the frozen replica's requests must end within a timeout of
	// when it started or of the freeze, whichever came later (a stream
	// under way goes silent then): the first-byte and idle bounds.
	for _, o := range out {
		if o.served == frozen && o.err != nil {
			if d := o.ended.Sub(maxTime(o.started, stopped)); d > slowest {
				slowest = d
			}
		}
	}
	if slack := time.Second; slowest > timeout+slack {
		t.Errorf("a request to the frozen replica took %v to end after the freeze or its start (timeouts %v, slack %v)", slowest, timeout, slack)
	}
	st, err := g.endpointStatus(ctx, frozen)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests: %d to the frozen replica ended with 504, %d cut streams, %d others failed; slowest to end %v; frozen replica failures %d, ejected %v",
		len(out), timedOut, cut, others, slowest.Round(time.Millisecond), st.Failures, st.EjectedForMs != nil)
	if timedOut+cut == 0 {
		t.Error("no request to the frozen replica ended: the test shows nothing")
	}
	if st.Failures < 3 {
		t.Errorf("the frozen replica has %d failures, want it ejected (3)", st.Failures)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// rand2 is true half of the time: a mix of streamed and whole answers.
func rand2() bool { return time.Now().UnixNano()&1 == 0 }

// TestFaultCloseAfterPOST: a model server that closes the connection after
// reading a POST on a reused connection receives each request once — the
// proxy answers 502 rather than sending a generation twice.
func TestFaultCloseAfterPOST(t *testing.T) {
	const ip = "127.0.83.9"
	g := startFaultGateway(t, faultSetup{replicas: 0, subnet: 83, extraPods: []string{ip}})
	var posts atomic.Int32
	serveDropping(t, fmt.Sprintf("%s:%d", ip, g.podPort), &posts)
	ctx := context.Background()
	const n = 20
	failed := 0
	for range n {
		if o := g.chatReq(ctx, false, 4, model); o.err != nil {
			failed++
			if o.status != http.StatusBadGateway || o.served == "" {
				t.Errorf("want 502 naming the endpoint, got %d %q: %v", o.status, o.served, o.err)
			}
		}
	}
	t.Logf("%d client requests, %d failed (the server dropped them), the server read %d", n, failed, posts.Load())
	if int(posts.Load()) != n {
		t.Errorf("the server read %d POSTs for %d client requests", posts.Load(), n)
	}
	if failed == 0 {
		t.Error("no request was dropped: the test shows nothing")
	}
}

// serveDropping serves addr: each connection's first POST is answered, its
// second read in full and then the connection closed. /metrics is 404.
func serveDropping(t *testing.T, addr string, posts *atomic.Int32) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if req.Method != http.MethodPost {
						io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
						continue
					}
					posts.Add(1)
					if n++; n == 2 {
						return
					}
					const body = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}`
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			})
		}
	})
}

// TestFaultHeaderBoundValues: model names a header cannot carry (CR/LF and
// other control characters, escaped in the JSON) get 400 from the proxy,
// reach no replica and eject none: afterwards every replica still serves.
func TestFaultHeaderBoundValues(t *testing.T) {
	g := startFaultGateway(t, faultSetup{replicas: 3, subnet: 84, simArgs: []string{"--time-scale", "0.05"}})
	ctx := context.Background()
	for _, bad := range []string{"evil\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "a\x7fb", "a\x1bb"} {
		for range 6 {
			body, _ := json.Marshal(map[string]any{"model": bad, "max_tokens": 4, "messages": []map[string]string{{"role": "user", "content": "hi"}}})
			if o := g.post(ctx, body, false); o.status != http.StatusBadRequest || !strings.Contains(o.err.Error(), "invalid_model") {
				t.Fatalf("model %q: %d %v, want 400 invalid_model", bad, o.status, o.err)
			}
		}
	}
	for i := range g.podIPs {
		st, err := g.endpointStatus(ctx, g.endpoint(i))
		if err != nil {
			t.Fatal(err)
		}
		if st.EjectedForMs != nil || st.Failures != 0 {
			t.Errorf("%s: %d failures, ejected %v after the client's bad requests", st.Address, st.Failures, st.EjectedForMs != nil)
		}
	}
	seen := map[string]bool{}
	for range 60 {
		o := g.chatReq(ctx, false, 4, model)
		if o.err != nil {
			t.Fatal(o.err)
		}
		seen[o.served] = true
	}
	if len(seen) != len(g.podIPs) {
		t.Errorf("served by %v, want all %d replicas", seen, len(g.podIPs))
	}
}

// TestFaultOversizedUploads: 16 clients upload 24 MB bodies at once, of
// unknown length, each pausing after 15 MiB as a slow client would (so
// the proxy holds that much of each until the 16 MiB limit). With a
// 64 MiB buffered-body budget the proxy's peak resident size grows by
// less than the budget plus 32 MiB (the runtime's own), every upload is
// refused (413 past the limit, 503 when the budget is spent) and the
// gateway still serves; without the budget the same uploads take several
// times as much.
func TestFaultOversizedUploads(t *testing.T) {
	const budget = 64 << 20
	bounded, boundedUse := oversizedUploads(t, 85, budget)
	unbounded, unboundedUse := oversizedUploads(t, 86, -1)
	t.Logf("peak RSS growth: %d MiB with a %d MiB budget, %d MiB without one; buffered bodies at most %d MiB and %d MiB (infergate_proxy_buffered_request_body_bytes)",
		bounded>>20, budget>>20, unbounded>>20, boundedUse>>20, unboundedUse>>20)
	if limit := int64(budget + 32<<20); bounded > limit {
		t.Errorf("peak RSS grew by %d MiB with a %d MiB budget (want ≤ %d MiB)", bounded>>20, budget>>20, limit>>20)
	}
	if unbounded < 2*bounded {
		t.Errorf("without a budget the uploads took %d MiB, with one %d MiB: the measurement cannot tell the budget works", unbounded>>20, bounded>>20)
	}
	// The budget's metric shows its use: filled close to the budget, never
	// past it; without a budget, past it.
	if boundedUse > budget || boundedUse < budget/2 {
		t.Errorf("with a %d MiB budget the buffered-body metric peaked at %d MiB (want between half the budget and the budget)", budget>>20, boundedUse>>20)
	}
	if unboundedUse <= budget {
		t.Errorf("without a budget the buffered-body metric peaked at %d MiB, want more than %d MiB (16 × 15 MiB held)", unboundedUse>>20, budget>>20)
	}
}

// oversizedUploads runs 16 concurrent 24 MB uploads through a proxy with
// the given --max-buffered-body-bytes and returns how much its peak
// resident size grew and the highest buffered-body use its metric showed.
func oversizedUploads(t *testing.T, subnet int, budget int64) (rss, used int64) {
	g := startFaultGateway(t, faultSetup{replicas: 1, subnet: subnet, simArgs: []string{"--time-scale", "0.05"},
		proxyArgs: []string{"--max-buffered-body-bytes", fmt.Sprint(budget)}})
	ctx := context.Background()
	if o := g.chatReq(ctx, false, 4, model); o.err != nil {
		t.Fatal(o.err)
	}
	before, err := g.proxy.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	// Each upload sends 15 MiB, pauses, then goes on past the 16 MiB limit.
	const uploads, size, pause = 16, 24 << 20, 15 << 20
	statuses := make([]int, uploads)
	// Sample the buffered-body metric while the uploads are held.
	var peakUse float64
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := g.metricValue(ctx, "infergate_proxy_buffered_request_body_bytes "); err == nil {
				peakUse = max(peakUse, v)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range uploads {
		wg.Go(func() {
			pr, pw := io.Pipe()
			go func() {
				chunk := []byte(strings.Repeat("x", 64<<10))
				pw.Write([]byte(`{"model":"` + model + `","messages":[{"role":"user","content":"`))
				for n := 0; n < size; n += len(chunk) {
					if n == pause {
						// Hold what was sent so far in the proxy, all
						// uploads at once, as slow clients do.
						time.Sleep(time.Second)
					}
					if _, err := pw.Write(chunk); err != nil {
						return
					}
				}
				pw.Write([]byte(`"}]}`))
				pw.Close()
			}()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", g.gatewayPort), pr)
			req.Header.Set("Content-Type", "application/json")
			resp, err := g.client.Do(req)
			pr.CloseWithError(io.ErrClosedPipe)
			if err != nil {
				t.Errorf("upload %d: %v", i, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	close(stopSampling)
	<-sampled
	after, err := g.proxy.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	refusals, err := g.metricValue(ctx, "infergate_proxy_body_budget_refusals_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("budget %d: 16 × %d MiB uploads: statuses %v; proxy peak RSS %d → %d MiB; %v refused for the budget",
		budget, size>>20, statuses, before>>20, after>>20, refusals)
	for i, s := range statuses {
		if s != http.StatusRequestEntityTooLarge && s != http.StatusServiceUnavailable {
			t.Errorf("upload %d: status %d, want 413 or 503", i, s)
		}
	}
	if o := g.chatReq(ctx, false, 4, model); o.err != nil {
		t.Fatalf("after the uploads: %v", o.err)
	}
	return after - before, int64(peakUse)
}
