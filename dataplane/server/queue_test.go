package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/infergate/infergate/dataplane/internal/testwait"
	"github.com/infergate/infergate/dataplane/server"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// loadedModel is a model server whose scraped waiting queue the test sets
// (≥ 5 makes a one-pod pool saturated) and that counts what it serves.
func loadedModel(t *testing.T, waiting *atomic.Int64, hits *atomic.Int64) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting %d\n"+
				"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 0.1\n", waiting.Load())
			return
		}
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"c","object":"text_completion","choices":[]}`)
	}))
	t.Cleanup(s.Close)
	return s
}

// metricValue sums the samples of a family whose labels include want.
func metricValue(t *testing.T, m *server.Manager, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := m.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, mt := range f.GetMetric() {
			for k, v := range want {
				found := false
				for _, l := range mt.GetLabel() {
					found = found || l.GetName() == k && l.GetValue() == v
				}
				if !found {
					continue next
				}
			}
			switch {
			case mt.GetGauge() != nil:
				sum += mt.GetGauge().GetValue()
			case mt.GetCounter() != nil:
				sum += mt.GetCounter().GetValue()
			case mt.GetHistogram() != nil:
				sum += float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// TestWaitQueueRequestPath drives a pool with a wait queue through a
// running proxy: requests to the saturated pool wait instead of reaching
// it, a scrape showing room dispatches them, and the TTL, a full queue,
// eviction by a higher priority, a client going away and shedding each
// get their answer.
func TestWaitQueueRequestPath(t *testing.T) {
	var waiting, hits atomic.Int64
	waiting.Store(10)
	be := loadedModel(t, &waiting, &hits)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	rs := snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(pool, 1))}, []backendSpec{pool},
		&snapshotv1.ModelRule{Name: gw + "/crit", Pool: pool.resourceName(), Objective: "critical", Priority: 5},
		&snapshotv1.ModelRule{Name: gw + "/batch", Pool: pool.resourceName(), Objective: "batch", Priority: -1})
	apply(t, m, withProfile(rs, &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "queue", Weight: 1}}, ShedSheddable: true,
		Queue: &snapshotv1.WaitQueue{MaxRequests: 2, Ttl: durationpb.New(400 * time.Millisecond)}}))
	testwait.Until(t, "the saturated pod scraped", func() bool {
		s := m.Endpoints().Statuses()
		return len(s) == 1 && s[0].Metrics != nil && s[0].Metrics.Waiting == 10
	})
	queued := func() float64 {
		return metricValue(t, m, "infergate_proxy_queue_requests", map[string]string{"name": "ns/pool"})
	}
	outcome := func(o string) float64 {
		return metricValue(t, m, "infergate_proxy_queue_outcomes_total", map[string]string{"name": "ns/pool", "outcome": o})
	}
	send := func(ctx context.Context, objective, flow string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", url(port, "/v1/completions"), strings.NewReader(`{"model":"m","prompt":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		if objective != "" {
			req.Header.Set("X-Gateway-Inference-Objective", objective)
		}
		if flow != "" {
			req.Header.Set("X-Gateway-Inference-Fairness-Id", flow)
		}
		return http.DefaultClient.Do(req)
	}
	type answer struct {
		resp *http.Response
		err  error
	}
	async := func(ctx context.Context, objective, flow string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			resp, err := send(ctx, objective, flow)
			ch <- answer{resp, err}
		}()
		return ch
	}
	bg := context.Background()

	// TTL: nothing frees up, so the request is answered 503 queue_timeout.
	start := time.Now()
	resp, err := send(bg, "", "")
	if err != nil {
		t.Fatal(err)
	}
	expectError(t, resp, http.StatusServiceUnavailable, "queue_timeout")
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("answered after %v, before the TTL", d)
	}

	// Sheddable requests are shed at once, as without a queue.
	resp, err = send(bg, "batch", "")
	if err != nil {
		t.Fatal(err)
	}
	expectError(t, resp, http.StatusTooManyRequests, "overloaded")

	// A client that goes away leaves the queue at once.
	ctx, cancel := context.WithCancel(bg)
	gone := async(ctx, "", "tenant-a")
	testwait.Until(t, "one request waiting", func() bool { return queued() == 1 })
	cancel()
	<-gone
	testwait.Until(t, "the canceled request out of the queue", func() bool { return queued() == 0 && outcome("canceled") == 1 })

	// Fill the queue (2) from one tenant; a third from that tenant is
	// refused, a critical one evicts the tenant's newest.
	first := async(bg, "", "tenant-a")
	testwait.Until(t, "first waiting", func() bool { return queued() == 1 })
	second := async(bg, "", "tenant-a")
	testwait.Until(t, "second waiting", func() bool { return queued() == 2 })
	checkQueuesAdmin(t, m, `"pool": "ns/pool"`, `"maxRequests": 2`, `"ttl": "400ms"`, `"waiting": 2`, `"headroom": 0`,
		`"priority": 0,
        "waiting": 2,
        "flows": 1,`)
	resp, err = send(bg, "", "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	expectError(t, resp, http.StatusTooManyRequests, "queue_full")
	crit := async(bg, "critical", "tenant-b")
	a := <-second
	if a.err != nil {
		t.Fatal(a.err)
	}
	expectError(t, a.resp, http.StatusTooManyRequests, "queue_evicted")
	if hits.Load() != 0 {
		t.Fatalf("the saturated pool got %d requests", hits.Load())
	}

	// The pod drains: the next scrape dispatches who waits.
	waiting.Store(0)
	for _, ch := range []<-chan answer{first, crit} {
		a := <-ch
		if a.err != nil {
			t.Fatal(a.err)
		}
		io.Copy(io.Discard, a.resp.Body)
		a.resp.Body.Close()
		if a.resp.StatusCode != http.StatusOK {
			t.Fatalf("dispatched request answered %d", a.resp.StatusCode)
		}
	}
	if hits.Load() != 2 {
		t.Fatalf("pool served %d, want the 2 dispatched", hits.Load())
	}
	for o, want := range map[string]float64{"dispatched": 2, "ttl": 1, "evicted": 1, "rejected": 1, "canceled": 1} {
		if got := outcome(o); got != want {
			t.Errorf("outcome %s counted %v, want %v", o, got, want)
		}
	}
	if got := metricValue(t, m, "infergate_proxy_queue_wait_seconds", map[string]string{"name": "ns/pool"}); got != 6 {
		t.Errorf("wait histogram has %v samples, want 6", got)
	}

	// With room and nobody waiting, requests pass straight through.
	resp, err = send(bg, "", "")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || outcome("dispatched") != 2 {
		t.Fatalf("status %d, dispatched %v", resp.StatusCode, outcome("dispatched"))
	}
}

// checkQueuesAdmin asserts the admin API's /queues answer contains each of
// want (indented JSON).
func checkQueuesAdmin(t *testing.T, m *server.Manager, want ...string) {
	t.Helper()
	code, body := adminGet(t, m, "/queues")
	for _, w := range want {
		if code != http.StatusOK || !strings.Contains(body, w) {
			t.Fatalf("/queues %d lacks %s:\n%s", code, w, body)
		}
	}
}

// TestWaitQueueCountsAgainstRequestTimeout: the rule's request timeout
// covers the whole request, so time spent in a pool's queue shortens what
// is left for the upstream: a request that waits ~300 ms and then meets a
// 500 ms upstream under a 600 ms timeout gets 504, not an answer at 800 ms.
func TestWaitQueueCountsAgainstRequestTimeout(t *testing.T) {
	var waiting atomic.Int64
	waiting.Store(10)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting %d\n", waiting.Load())
			return
		}
		io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"c","object":"text_completion","choices":[]}`)
	}))
	t.Cleanup(be.Close)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	rt := route("r", "/", ref(pool, 1))
	rt.Timeouts = &snapshotv1.Timeouts{RequestMs: 600}
	rs := snapshot([]uint32{port}, []*snapshotv1.Route{rt}, []backendSpec{pool})
	apply(t, m, withProfile(rs, &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "queue", Weight: 1}},
		Queue: &snapshotv1.WaitQueue{Ttl: durationpb.New(10 * time.Second)}}))
	testwait.Until(t, "the saturated pod scraped", func() bool {
		s := m.Endpoints().Statuses()
		return len(s) == 1 && s[0].Metrics != nil && s[0].Metrics.Waiting == 10
	})
	time.AfterFunc(300*time.Millisecond, func() { waiting.Store(0) }) // the next scrape dispatches
	start := time.Now()
	resp, err := http.Post(url(port, "/v1/completions"), "application/json", strings.NewReader(`{"model":"m","prompt":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d after %v (%s): the queue wait must count against the request timeout", resp.StatusCode, time.Since(start), b)
	}
}
