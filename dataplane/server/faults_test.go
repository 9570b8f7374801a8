package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/server"
	"github.com/infergate/infergate/dataplane/upstream"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// logBuffer collects a manager's log lines (text format).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// line returns the first logged line containing every one of parts.
func (l *logBuffer) line(parts ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ln := range strings.Lines(l.b.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(ln, p)
		}
		if all {
			return ln
		}
	}
	return ""
}

// poolProxy serves a pool of addrs behind one route for "/" (r may set
// the route's timeouts) on a fresh port, logging at the default level
// (info) to the returned buffer.
func poolProxy(t *testing.T, opts pipeline.Options, r func(*snapshotv1.Route), addrs ...string) (*server.Manager, uint32, *logBuffer) {
	t.Helper()
	return poolProxyWith(t, opts, r, nil, addrs...)
}

// poolProxyWith is poolProxy with a last edit of the resources.
func poolProxyWith(t *testing.T, opts pipeline.Options, r func(*snapshotv1.Route), edit func([]snapshotv1.Named), addrs ...string) (*server.Manager, uint32, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	pool := backendSpec{name: "pool", pool: true, addrs: addrs}
	port := freePort(t)
	m := newManagerLogged(t, server.Options{Pipeline: opts}, slog.New(slog.NewTextHandler(logs, nil)))
	rt := route("r", "/", ref(pool, 1))
	if r != nil {
		r(rt)
	}
	rs := snapshot([]uint32{port}, []*snapshotv1.Route{rt}, []backendSpec{pool})
	if edit != nil {
		edit(rs)
	}
	apply(t, m, rs)
	return m, port, logs
}

// metricsAt points the /metrics port of the endpoint at addr to the
// port of metrics (an address that answers, so that the endpoint is not
// taken for gone by its scrapes: only its requests find out).
func metricsAt(addr, metrics string) func([]snapshotv1.Named) {
	_, p, _ := net.SplitHostPort(metrics)
	port, _ := strconv.Atoi(p)
	return func(rs []snapshotv1.Named) {
		for _, r := range rs {
			if eps, ok := r.(*snapshotv1.Endpoints); ok {
				for _, e := range eps.Endpoints {
					if net.JoinHostPort(e.Address, strconv.Itoa(int(e.Port))) == addr {
						e.MetricsPort = uint32(port)
					}
				}
			}
		}
	}
}

func postChat(t *testing.T, port uint32, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url(port, "/v1/chat/completions"), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", fmt.Sprintf("req-%d", time.Now().UnixNano()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

const chatBody = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`

// deadAddr is a loopback address nothing listens on (connect refused).
func deadAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// status returns the registry's state of endpoint addr.
func status(t *testing.T, m *server.Manager, addr string) endpoints.Status {
	t.Helper()
	for _, s := range m.Endpoints().Statuses() {
		if s.Address == addr {
			return s
		}
	}
	t.Fatalf("no endpoint %s", addr)
	return endpoints.Status{}
}

// TestNotSentRetriedElsewhere: a request whose attempt never reached its
// endpoint (connection refused) goes to another endpoint of the pool
// without any retry policy on the route; turned off, the same requests
// fail with 502 naming the dead endpoint, logged at the default level.
// (The dead endpoint's metrics port answers, so only requests find out
// it is gone — a refused scrape would eject it first.)
func TestNotSentRetriedElsewhere(t *testing.T) {
	live := modelServer(t)
	dead := deadAddr(t)
	m, port, _ := poolProxyWith(t, pipeline.Options{}, nil, metricsAt(dead, addr(live)), dead, addr(live))
	for i := range 30 {
		resp := postChat(t, port, chatBody)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get(upstream.ServedHeader) != addr(live) {
			t.Fatalf("request %d: status %d from %q", i, resp.StatusCode, resp.Header.Get(upstream.ServedHeader))
		}
	}
	text := checkMetrics(t, m, `infergate_proxy_upstream_retries_total{reason="not_sent"}`)
	if !strings.Contains(text, "infergate_proxy_upstream_retries_total") {
		t.Fatal("no retry recorded")
	}

	m, port, logs := poolProxyWith(t, pipeline.Options{NotSentRetries: -1}, nil, metricsAt(dead, addr(live)), dead, addr(live))
	failed := 0
	for range 30 {
		resp := postChat(t, port, chatBody)
		if resp.StatusCode == 502 {
			failed++
			if got := resp.Header.Get(upstream.ServedHeader); got != dead {
				t.Errorf("502 names %q, want the dead endpoint %s", got, dead)
			}
			id := resp.Request.Header.Get("X-Request-Id")
			if l := logs.line("upstream request failed", "request_id="+id, "endpoint="+dead, "cause="); l == "" || !strings.Contains(l, "level=WARN") {
				t.Errorf("no WARN line with the request id, endpoint and cause for %s; logs:\n%s", id, logs.b.String())
			}
		}
		resp.Body.Close()
	}
	if failed == 0 {
		t.Fatal("without retries no request failed: the test cannot tell retries work")
	}
	_ = m
}

// dropBackend answers the first POST on each connection and reads the
// second in full, then closes the connection without answering. It counts
// the POSTs it read. Other requests (metrics scrapes) get 404.
func dropBackend(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var posts atomic.Int32
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close() // idle keep-alive connections of the proxy's clients
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
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
				}
			})
		}
	})
	return ln.Addr().String(), &posts
}

// TestWrittenPOSTNotResent: a model server that reads a POST on a reused
// connection and closes it gets the request once; the client gets a 502
// naming it (a duplicate would be a second, billed generation).
func TestWrittenPOSTNotResent(t *testing.T) {
	be, posts := dropBackend(t)
	_, port, logs := poolProxy(t, pipeline.Options{}, nil, be)
	resp := postChat(t, port, chatBody)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	resp = postChat(t, port, chatBody)
	if resp.Header.Get(upstream.ServedHeader) != be {
		t.Errorf("502 names %q, want %s", resp.Header.Get(upstream.ServedHeader), be)
	}
	expectError(t, resp, 502, "upstream_error")
	if n := posts.Load(); n != 2 {
		t.Fatalf("the server read %d POSTs for 2 client requests", n)
	}
	if logs.line("upstream request failed", "endpoint="+be) == "" {
		t.Errorf("502 not logged:\n%s", logs.b.String())
	}
}

// postServer serves POSTs with h until the test ends (done is closed
// then, so a handler that waits can end); other requests (the proxy's
// metrics scrapes) get 404.
func postServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, done <-chan struct{})) *httptest.Server {
	done := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		h(w, r, done)
	}))
	t.Cleanup(func() { close(done); s.Close() })
	return s
}

// frozen answers nothing to POSTs until the test ends (a SIGSTOPped model
// server), except after delay when delay > 0.
func frozen(t *testing.T, delay time.Duration) *httptest.Server {
	return postServer(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
		var after <-chan time.Time
		if delay > 0 {
			after = time.After(delay)
		}
		select {
		case <-done:
		case <-r.Context().Done():
		case <-after:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{}`)
		}
	})
}

// TestFrozenEndpointTimesOut: without any route timeout, an endpoint that
// does not answer ends its requests with 504 after the first-byte timeout
// and is ejected; a route's own timeout replaces the first-byte one.
func TestFrozenEndpointTimesOut(t *testing.T) {
	be := frozen(t, 0)
	const timeout = 300 * time.Millisecond
	m, port, logs := poolProxy(t, pipeline.Options{FirstByteTimeout: timeout}, nil, addr(be))
	for i := range 3 {
		start := time.Now()
		resp := postChat(t, port, chatBody)
		took := time.Since(start)
		if resp.Header.Get(upstream.ServedHeader) != addr(be) {
			t.Errorf("504 names %q", resp.Header.Get(upstream.ServedHeader))
		}
		expectError(t, resp, 504, "upstream_timeout")
		if took < timeout || took > timeout+3*time.Second {
			t.Errorf("request %d ended after %v, want about %v", i, took, timeout)
		}
	}
	if st := status(t, m, addr(be)); st.EjectedForMs == nil || st.Failures < 3 {
		t.Errorf("endpoint not ejected after 3 timeouts: %+v", st)
	}
	if logs.line("upstream request failed", "status=504", "first-byte timeout") == "" {
		t.Errorf("504 not logged with its cause:\n%s", logs.b.String())
	}

	slow := frozen(t, 600*time.Millisecond)
	_, port, _ = poolProxy(t, pipeline.Options{FirstByteTimeout: timeout}, func(r *snapshotv1.Route) {
		r.Timeouts = &snapshotv1.Timeouts{RequestMs: 5000}
	}, addr(slow))
	resp := postChat(t, port, chatBody)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a route timeout of 5 s must replace the 300 ms first-byte one: status %d", resp.StatusCode)
	}
}

// streamer sends the head and one event, then hangs (hang) or drops the
// connection.
func streamer(t *testing.T, hang bool) *httptest.Server {
	return postServer(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t\"}}]}\n\n")
		w.(http.Flusher).Flush()
		if !hang {
			panic(http.ErrAbortHandler) // the connection is cut
		}
		select {
		case <-done:
		case <-r.Context().Done():
		}
	})
}

// TestCutStreamsAreErrors: a stream the model server cuts, or stops
// feeding for longer than the idle timeout, reaches the client as an
// aborted response, counts as an error (error_code stream_cut, not a
// success) and against the endpoint, and is logged.
func TestCutStreamsAreErrors(t *testing.T) {
	for _, hang := range []bool{false, true} {
		be := streamer(t, hang)
		m, port, logs := poolProxy(t, pipeline.Options{StreamIdleTimeout: 300 * time.Millisecond}, nil, addr(be))
		resp := postChat(t, port, `{"model":"m","stream":true,"messages":[]}`)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || err == nil {
			t.Errorf("hang=%v: status %d, read %q, %v; want the stream started and then aborted", hang, resp.StatusCode, body, err)
		}
		checkMetrics(t, m, `inference_objective_request_error_total{error_code="stream_cut",model_name="m",target_model_name="m"} 1`)
		if text := scrapeMetrics(t, m); !strings.Contains(text, `inference_objective_request_duration_seconds_count{model_name="m",target_model_name="m"} 0`) {
			t.Errorf("hang=%v: the cut stream was also recorded as a completed request", hang)
		}
		if st := status(t, m, addr(be)); st.Failures != 1 {
			t.Errorf("hang=%v: endpoint failures %d, want 1", hang, st.Failures)
		}
		want := "upstream stream cut"
		if l := logs.line(want, "endpoint="+addr(be)); l == "" || hang && !strings.Contains(l, "idle timeout") {
			t.Errorf("hang=%v: no log line for the cut (with its cause):\n%s", hang, logs.b.String())
		}
	}
}

// TestHeaderBoundModelIs400: a model name a header cannot carry (CR/LF,
// escaped in the JSON) is the client's 400, reaches no model server and
// never counts against one.
func TestHeaderBoundModelIs400(t *testing.T) {
	var posts seen
	be := posts.server(t, 200)
	m, port, _ := poolProxy(t, pipeline.Options{}, nil, addr(be))
	for _, model := range []string{`a\r\nX-Injected: 1`, `a\nb`, `a\u0000b`, `a\rb`} {
		for range 3 {
			resp := postChat(t, port, `{"model":"`+model+`","messages":[]}`)
			expectError(t, resp, 400, "invalid_model")
		}
	}
	if n := posts.hits.Load(); n != 0 {
		t.Fatalf("the model server got %d requests with bad model names", n)
	}
	if st := status(t, m, addr(be)); st.EjectedForMs != nil || st.Failures != 0 {
		t.Fatalf("a client's bad requests counted against the endpoint: %+v", st)
	}
	resp := postChat(t, port, chatBody)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a good request after them: %d", resp.StatusCode)
	}
}

// TestBodyBudget: a body that does not fit the global budget gets 503
// with Retry-After (before a byte of it is buffered, when its length is
// declared), counted in the metrics; one that fits goes through.
func TestBodyBudget(t *testing.T) {
	var posts seen
	be := posts.server(t, 200)
	m, port, logs := poolProxy(t, pipeline.Options{BodyBudget: 64 << 10}, nil, addr(be))
	big := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", 100<<10) + `"}]}`
	resp := postChat(t, port, big)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	expectError(t, resp, 503, "body_budget_exceeded")
	if posts.hits.Load() != 0 {
		t.Fatal("the refused request reached the model server")
	}
	resp = postChat(t, port, chatBody)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a small body: %d", resp.StatusCode)
	}
	checkMetrics(t, m, "infergate_proxy_body_budget_refusals_total 1", "infergate_proxy_buffered_request_body_limit_bytes 65536",
		"infergate_proxy_buffered_request_body_bytes 0")
	if logs.line("body budget", "status=503") == "" {
		t.Errorf("503 not logged:\n%s", logs.b.String())
	}
}
