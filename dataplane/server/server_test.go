package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/config/configtest"
	"github.com/infergate/infergate/dataplane/internal/testwait"
	"github.com/infergate/infergate/dataplane/server"
	"github.com/infergate/infergate/dataplane/upstream"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// echo answers with what it received: method, path, selected headers, body.
func echo(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hdr := map[string]string{}
		for k := range r.Header {
			hdr[k] = r.Header.Get(k)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "proto": r.Proto, "headers": hdr, "body": string(b), "host": r.Host})
	}))
	t.Cleanup(s.Close)
	return s
}

type echoed struct {
	Path    string            `json:"path"`
	Proto   string            `json:"proto"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	Host    string            `json:"host"`
}

func decodeEcho(t *testing.T, resp *http.Response) echoed {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var e echoed
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestProxyForwards(t *testing.T) {
	be := echo(t)
	_, port := serviceAt(t, be)

	body := `{"model":"llama","messages":[{"role":"user","content":"hi"}]}`
	req, _ := http.NewRequest("POST", url(port, "/v1/chat/completions"), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gateway-Inference-Objective", "critical")
	req.Header.Set("X-Gateway-Inference-Fairness-Id", "tenant")
	req.Header.Set("X-Gateway-Model-Name-Rewrite", "x")
	req.Header.Set("X-Keep", "yes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("X-Gateway-Destination-Endpoint-Served"); got != addr(be) {
		t.Errorf("served header %q, want %q", got, addr(be))
	}
	e := decodeEcho(t, resp)
	if e.Body != body || e.Path != "/v1/chat/completions" {
		t.Errorf("forwarded %+v", e)
	}
	if e.Headers["X-Gateway-Model-Name"] != "llama" || e.Headers["X-Keep"] != "yes" || e.Headers["X-Forwarded-For"] == "" {
		t.Errorf("headers %v", e.Headers)
	}
	for _, h := range []string{"X-Gateway-Inference-Objective", "X-Gateway-Inference-Fairness-Id", "X-Gateway-Model-Name-Rewrite"} {
		if _, ok := e.Headers[h]; ok {
			t.Errorf("%s reached the backend", h)
		}
	}
	if !strings.HasPrefix(e.Host, "127.0.0.1:") || e.Host == addr(be) {
		t.Errorf("client Host must be kept, got %q", e.Host)
	}
}

func TestErrorResponses(t *testing.T) {
	dead := freePort(t) // nothing listens here
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Hijack and send garbage: a bad upstream response.
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Write([]byte("NOT HTTP\r\n\r\n"))
		c.Close()
	}))
	t.Cleanup(broken.Close)
	empty := backendSpec{name: "empty"}
	down := backendSpec{name: "down", addrs: []string{fmt.Sprintf("127.0.0.1:%d", dead)}}
	bad := backendSpec{name: "bad", addrs: []string{addr(broken)}}
	port := freePort(t)
	logs := &logBuffer{}
	m := newManagerLogged(t, server.Options{}, slog.New(slog.NewTextHandler(logs, nil)))
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{
		route("invalid", "/invalid", &snapshotv1.BackendRef{Weight: 1, InvalidReason: "BackendNotFound"}),
		route("zero", "/zero", &snapshotv1.BackendRef{Backend: empty.resourceName(), Weight: 0}),
		route("empty", "/empty", ref(empty, 1)),
		route("down", "/down", ref(down, 1)),
		route("bad", "/bad", ref(bad, 1)),
	}, []backendSpec{empty, down, bad}))

	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/nothing", 404, "route_not_found"},
		{"/invalid", 500, "invalid_backend_ref"},
		{"/zero", 500, "no_backend"},
		{"/empty", 503, "no_healthy_upstream"},
		{"/down", 502, "upstream_error"},
		{"/bad", 502, "upstream_error"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Post(url(port, tc.path), "application/json", strings.NewReader(`{"model":"m"}`))
			if err != nil {
				t.Fatal(err)
			}
			id := resp.Header.Get(upstream.RequestIDHeader)
			expectError(t, resp, tc.status, tc.code)
			// Every 5xx the proxy writes is logged at the default level
			// with the request's id, the endpoint (if any) and the cause.
			if tc.status >= 500 {
				if l := logs.line("level=WARN", "request_id="+id, fmt.Sprintf("status=%d", tc.status), "endpoint=", "cause="); id == "" || l == "" {
					t.Errorf("%d %s for request %q not logged at WARN with request id, status, endpoint and cause:\n%s", tc.status, tc.code, id, logs.b.String())
				}
			}
		})
	}
	t.Run("HEAD /nothing", func(t *testing.T) {
		resp, err := http.Head(url(port, "/nothing"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "" {
			t.Fatalf("HEAD without a route: status %d, Content-Type %q; want 404 and none", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
	t.Run("413", func(t *testing.T) {
		big := `{"model":"m","x":"` + strings.Repeat("a", 17<<20) + `"}`
		resp, err := http.Post(url(port, "/down"), "application/json", strings.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		expectError(t, resp, 413, "request_too_large")
	})
}

// TestSSEEventByEvent reads the first event before the backend is allowed
// to send the second: only per-event flushing can pass.
func TestSSEEventByEvent(t *testing.T) {
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"n\":1}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: {\"n\":2}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(be.Close)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(pool, 1))}, []backendSpec{pool}))

	resp, err := http.Post(url(port, "/v1/chat/completions"), "application/json", strings.NewReader(`{"model":"m","stream":true,"messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil || line != "data: {\"n\":1}\n" {
		t.Fatalf("first event: %q %v", line, err)
	}
	ep := m.Endpoints().Statuses()[0]
	if ep.InFlight != 1 {
		t.Fatalf("in-flight during the stream: %d, want 1", ep.InFlight)
	}
	close(release)
	rest, _ := io.ReadAll(rd)
	if string(rest) != "\ndata: {\"n\":2}\n\ndata: [DONE]\n\n" {
		t.Fatalf("rest: %q", rest)
	}
	// Released once the body is done, not at header time.
	testwait.Until(t, "in-flight released", func() bool { return m.Endpoints().Statuses()[0].InFlight == 0 })
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	started := make(chan struct{})
	canceled := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
		close(canceled)
	}))
	t.Cleanup(be.Close)
	m, port := serviceAt(t, be)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", url(port, "/v1/completions"), strings.NewReader(`{"model":"m"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	resp.Body.Close()
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream request not canceled after the client went away")
	}
	testwait.Until(t, "in-flight released", func() bool { return m.Endpoints().Statuses()[0].InFlight == 0 })
}

func TestListenersFollowConfig(t *testing.T) {
	be := echo(t)
	svc := backendSpec{name: "svc", addrs: []string{addr(be)}}
	a, b := freePort(t), freePort(t)
	routes := func() []*snapshotv1.Route { return []*snapshotv1.Route{route("r", "/", ref(svc, 1))} }
	m := newManager(t)
	get := func(port uint32) error { return ok200(http.Get(url(port, "/x"))) }
	apply(t, m, snapshot([]uint32{a}, routes(), []backendSpec{svc}))
	if err := get(a); err != nil {
		t.Fatal(err)
	}
	if get(b) == nil {
		t.Fatal("port b served before it was configured")
	}
	apply(t, m, snapshot([]uint32{a, b}, routes(), []backendSpec{svc}))
	if err := get(a); err != nil {
		t.Fatal(err)
	}
	if err := get(b); err != nil {
		t.Fatal("port b after adding:", err)
	}
	apply(t, m, snapshot([]uint32{b}, routes(), []backendSpec{svc}))
	http.DefaultClient.CloseIdleConnections()
	testwait.Until(t, "port a closed", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if err := get(b); err != nil {
		t.Fatal(err)
	}
}

// TestBadConfigKeepsServing: an invalid snapshot fails to compile and a
// config whose port cannot be bound fails to apply; either way the previous
// config keeps serving.
func TestBadConfigKeepsServing(t *testing.T) {
	be := echo(t)
	svc := backendSpec{name: "svc", addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	good := snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(svc, 1))}, []backendSpec{svc})
	apply(t, m, good)
	version := m.Config().Version

	bad := snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(svc, 1))}, []backendSpec{svc})
	bad[1].(*snapshotv1.Route).Matches[0].Path = &snapshotv1.PathMatch{Type: snapshotv1.MatchType_REGULAR_EXPRESSION, Value: "(("}
	if _, err := config.Compile(configtest.Resources(gw, bad...)); err == nil || !strings.Contains(err.Error(), `route "ns/gw/ns/r/0": match 0: path: invalid regex`) {
		t.Fatalf("compile error: %v", err)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := uint32(taken.Addr().(*net.TCPAddr).Port)
	if err := m.Apply(compile(t, snapshot([]uint32{busy}, []*snapshotv1.Route{route("r2", "/", ref(svc, 1))}, []backendSpec{svc}))); err == nil {
		t.Fatal("applying a config with a busy port must fail")
	}
	if m.Config().Version != version {
		t.Fatal("failed Apply replaced the config")
	}
	resp, err := http.Get(url(port, "/still"))
	if err != nil {
		t.Fatal(err)
	}
	if e := decodeEcho(t, resp); e.Path != "/still" {
		t.Fatalf("%+v", e)
	}
}

func TestPoolPrefersShorterQueue(t *testing.T) {
	model := func(waiting int, hits *atomic.Int64) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/metrics" {
				fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} %d\n"+
					"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 2\n"+
					"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"m\"} 0.5\n", waiting)
				return
			}
			hits.Add(1)
			io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, `{"choices":[]}`)
		}))
		t.Cleanup(s.Close)
		return s
	}
	var busyHits, idleHits atomic.Int64
	// The picker counts requests it sent since the last scrape as queued,
	// and these fakes' /metrics never drain: the gap must exceed the 20
	// requests sent, or the queues would rightly look level.
	busy, idle := model(100, &busyHits), model(0, &idleHits)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(busy), addr(idle)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(pool, 1))}, []backendSpec{pool}))
	testwait.Until(t, "both endpoints scraped", func() bool {
		for _, s := range m.Endpoints().Statuses() {
			if s.Metrics == nil {
				return false
			}
		}
		return true
	})
	for range 20 {
		resp, err := http.Post(url(port, "/v1/completions"), "application/json", strings.NewReader(`{"model":"m","prompt":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Gateway-Destination-Endpoint-Served"); got != addr(idle) {
			t.Fatalf("served by %s, want the idle %s", got, addr(idle))
		}
	}
	if busyHits.Load() != 0 || idleHits.Load() != 20 {
		t.Fatalf("hits busy=%d idle=%d", busyHits.Load(), idleHits.Load())
	}
}

func TestModelRuleRewritesBody(t *testing.T) {
	be := echo(t)
	_, port := foodReviewPool(t, be)
	resp, err := http.Post(url(port, "/v1/completions"), "application/json", strings.NewReader(`{"model":"food-review","prompt":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	e := decodeEcho(t, resp)
	if e.Body != `{"model":"food-review-lora","prompt":"x"}` {
		t.Fatalf("body %s", e.Body)
	}
	if e.Headers["X-Gateway-Model-Name"] != "food-review" {
		t.Fatalf("model header %q", e.Headers["X-Gateway-Model-Name"])
	}
	// Other models pass untouched.
	resp, err = http.Post(url(port, "/v1/completions"), "application/json", strings.NewReader(`{"model":"other","prompt":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if e := decodeEcho(t, resp); e.Body != `{"model":"other","prompt":"x"}` {
		t.Fatalf("body %s", e.Body)
	}
}

func TestModelHeaderRouting(t *testing.T) {
	a, b := echo(t), echo(t)
	pa := backendSpec{name: "pa", pool: true, addrs: []string{addr(a)}}
	pb := backendSpec{name: "pb", pool: true, addrs: []string{addr(b)}}
	ra := route("ra", "/", ref(pa, 1))
	ra.Matches[0].Headers = []*snapshotv1.HeaderMatch{{Name: "X-Gateway-Model-Name", Value: "model-a"}}
	rb := route("rb", "/", ref(pb, 1))
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{ra, rb}, []backendSpec{pa, pb}))
	for model, want := range map[string]string{"model-a": addr(a), "model-b": addr(b)} {
		resp, err := http.Post(url(port, "/v1/chat/completions"), "", strings.NewReader(`{"model":"`+model+`","messages":[]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Gateway-Destination-Endpoint-Served"); got != want {
			t.Errorf("%s served by %s, want %s", model, got, want)
		}
	}
}

func TestH2CUpstream(t *testing.T) {
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Proto)
	}))
	be.Config.Protocols = new(http.Protocols)
	be.Config.Protocols.SetUnencryptedHTTP2(true)
	be.Start()
	t.Cleanup(be.Close)
	svc := backendSpec{name: "svc", h2c: true, addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(svc, 1))}, []backendSpec{svc}))
	resp, err := http.Get(url(port, "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "HTTP/2.0" {
		t.Fatalf("upstream saw %q", b)
	}
}

func TestAdmin(t *testing.T) {
	m := newManager(t)
	status := func(path string) (int, string) { return adminGet(t, m, path) }
	if c, _ := status("/ready"); c != 503 || m.Ready() {
		t.Fatalf("ready before config: %d", c)
	}
	if c, _ := status("/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	be := echo(t)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	apply(t, m, snapshot([]uint32{freePort(t)}, []*snapshotv1.Route{route("r", "/v1", ref(pool, 1))}, []backendSpec{pool}))
	if c, _ := status("/ready"); c != 200 || !m.Ready() {
		t.Fatalf("ready after config: %d", c)
	}
	c, body := status("/config")
	if c != 200 || !strings.Contains(body, `"ns/gw/ns/r/0"`) || !strings.Contains(body, `"pathType": "PathPrefix"`) || !strings.Contains(body, `"kind": "InferencePool"`) {
		t.Fatalf("config %d: %s", c, body)
	}
	if !strings.Contains(body, `"scraping": {
    "proxies": 1,
    "interval": "10ms",
    "staleAfter": "200ms"
  }`) {
		t.Fatalf("config lacks the scrape schedule: %s", body)
	}
	m.Endpoints().SetProxies(80) // test interval 10 ms × 80
	if _, body = status("/config"); !strings.Contains(body, `"proxies": 80`) || !strings.Contains(body, `"interval": "800ms"`) || !strings.Contains(body, `"staleAfter": "3.2s"`) {
		t.Fatalf("config does not show 80 proxies' schedule: %s", body)
	}
	c, body = status("/endpoints")
	if c != 200 || !strings.Contains(body, addr(be)) || !strings.Contains(body, `"inFlight": 0`) {
		t.Fatalf("endpoints %d: %s", c, body)
	}
}

// TestWeightedBackends sends traffic through a rule split 3:1 over two
// Services. The exact split is tested with a fixed seed in the router
// package; here the bounds are so wide (expected 150/50 of 200) that a
// failure means a bug, not bad luck (P < 1e-12).
func TestWeightedBackends(t *testing.T) {
	a, b, c := echo(t), echo(t), echo(t)
	sa := backendSpec{name: "a", addrs: []string{addr(a)}}
	sb := backendSpec{name: "b", addrs: []string{addr(b)}}
	pool := backendSpec{name: "p", pool: true, addrs: []string{addr(c)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(sa, 4), ref(sb, 2), ref(pool, 2))}, []backendSpec{sa, sb, pool}))
	counts := map[string]int{}
	for range 200 {
		resp, err := http.Get(url(port, "/"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		counts[resp.Header.Get("X-Gateway-Destination-Endpoint-Served")]++
	}
	na, nb, np := counts[addr(a)], counts[addr(b)], counts[addr(c)]
	if na < 60 || na > 140 || nb < 20 || nb > 85 || np < 20 || np > 85 || na+nb+np != 200 {
		t.Fatalf("split %d/%d/%d, want about 100/50/50", na, nb, np)
	}
}

func TestChunkedAndExpect(t *testing.T) {
	be := echo(t)
	_, port := serviceAt(t, be)
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(`{"model":`))
		pw.Write([]byte(`"chunky"}`))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", url(port, "/v1/completions"), pr)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Expect", "100-continue")
	resp, err := (&http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	e := decodeEcho(t, resp)
	if e.Body != `{"model":"chunky"}` || e.Headers["X-Gateway-Model-Name"] != "chunky" || e.Headers["Expect"] != "" || e.Headers["Content-Length"] != "18" {
		t.Fatalf("%+v", e)
	}
}

// TestClientH2C: clients may speak prior-knowledge HTTP/2 in clear text to
// an HTTP listener, streaming responses included.
func TestClientH2C(t *testing.T) {
	_, port := serviceAt(t, echo(t))
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Post(url(port, "/h2"), "application/json", strings.NewReader(`{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("client spoke %s, want HTTP/2", resp.Proto)
	}
	if e := decodeEcho(t, resp); e.Path != "/h2" || e.Body != `{"model":"m"}` || e.Headers["X-Gateway-Model-Name"] != "m" {
		t.Errorf("forwarded %+v", e)
	}
}

// TestBodyAndTrailersThroughProxy: buffered request bodies reach the
// upstream byte for byte however they are written (small ones with the
// headers, large ones through the upstream connection's ReadFrom), and
// response trailers reach the client, for Services and pools alike.
func TestBodyAndTrailersThroughProxy(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Trailer", "X-Body-Length")
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
		w.Header().Set("X-Body-Length", strconv.Itoa(len(b)))
	}))
	t.Cleanup(be.Close)
	for _, kind := range []string{"service", "pool"} {
		spec := backendSpec{name: kind, pool: kind == "pool", addrs: []string{addr(be)}}
		port := freePort(t)
		m := newManager(t)
		apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(spec, 1))}, []backendSpec{spec}))
		for _, size := range []int{100, 300 << 10} {
			body := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("ab", size/2) + `"}]}`
			// Bounded: a body cut short would leave the backend waiting.
			client := &http.Client{Timeout: 10 * time.Second}
			resp, err := client.Post(url(port, "/v1/chat/completions"), "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || string(got) != body {
				t.Fatalf("%s, %d bytes: status %d, echoed %d bytes (%v)", kind, len(body), resp.StatusCode, len(got), err)
			}
			if tr := resp.Trailer.Get("X-Body-Length"); tr != strconv.Itoa(len(body)) {
				t.Errorf("%s, %d bytes: trailer X-Body-Length %q", kind, len(body), tr)
			}
		}
	}
}
