package server_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/infergate/infergate/dataplane/internal/testwait"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// TestPoolAutoscalingMetrics: the per-pool autoscaling signals follow the
// pool: saturation as shedding computes it, the model servers' summed
// queues, and the requests (bytes, estimated tokens) waiting in this
// proxy's wait queue, which drop to 0 once the pool drains.
func TestPoolAutoscalingMetrics(t *testing.T) {
	var waiting, hits atomic.Int64
	waiting.Store(10) // one pod, 10 waiting: saturation 10/5 = 2
	be := loadedModel(t, &waiting, &hits)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, withProfile(snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(pool, 1))}, []backendSpec{pool}),
		&snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "queue", Weight: 1}},
			Queue: &snapshotv1.WaitQueue{MaxRequests: 10, Ttl: durationpb.New(20 * time.Second)}}))
	// The HPA-selectable labels, beside name="ns/pool".
	pooled := map[string]string{"name": "ns/pool", "pool_namespace": "ns", "pool_name": "pool"}
	value := func(name string) float64 { return metricValue(t, m, name, pooled) }
	testwait.Until(t, "the saturated pod scraped", func() bool { return value("infergate_pool_waiting_requests") == 10 })
	if s := value("infergate_pool_saturation"); s != 2 {
		t.Errorf("saturation %v, want 2 (10 waiting / 5)", s)
	}
	if l := value("infergate_pool_load"); l != 2 {
		t.Errorf("load %v, want 2 (saturation 2 x 1 pod)", l)
	}
	if n := value("infergate_pool_stale_pods"); n != 0 {
		t.Errorf("%v stale pods, want 0", n)
	}
	if n := value("infergate_proxy_queued_requests"); n != 0 {
		t.Errorf("%v queued before any request", n)
	}

	body := `{"model":"m","prompt":"` + strings.Repeat("x", 400) + `"}`
	done := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := http.Post(url(port, "/v1/completions"), "application/json", strings.NewReader(body))
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	testwait.Until(t, "two requests waiting", func() bool { return value("infergate_proxy_queued_requests") == 2 })
	if b := value("infergate_proxy_queued_bytes"); b != float64(2*len(body)) {
		t.Errorf("queued bytes %v, want %d", b, 2*len(body))
	}
	if tok := value("infergate_proxy_queued_tokens"); tok != float64(2*len(body)/4) {
		t.Errorf("queued tokens %v, want %d", tok, 2*len(body)/4)
	}

	waiting.Store(0)
	for range 2 {
		if code := <-done; code != http.StatusOK {
			t.Fatalf("dispatched request answered %d", code)
		}
	}
	testwait.Until(t, "the queue and the pool drained", func() bool {
		return value("infergate_proxy_queued_requests") == 0 && value("infergate_proxy_queued_bytes") == 0 &&
			value("infergate_pool_saturation") == 0.1/0.8 // KV 0.1 of 0.8 is what is left
	})
}
