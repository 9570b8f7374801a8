package bench

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/e2e/modelsim"
)

// testFleet starts n replicas at the given time scale.
func testFleet(t *testing.T, n int, scale float64) (*Env, []*endpoints.Endpoint) {
	t.Helper()
	listen := make([]string, n)
	for i := range listen {
		listen[i] = "127.0.0.1:0"
	}
	f, err := modelsim.StartFleet(context.Background(), modelsim.FleetConfig{Config: modelsim.Config{TimeScale: scale}, Listen: listen, ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	var eps []*endpoints.Endpoint
	for _, a := range f.Addrs() {
		eps = append(eps, endpoints.New(endpoints.Spec{Address: a}))
	}
	return &Env{Fleet: f, Scenario: &Scenario{}, TimeScale: scale}, eps
}

func send(t *testing.T, ctx context.Context, url, body string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			t.Error(err)
		}
		return
	}
	resp.Body.Close()
}

// TestOracleLoad: before each pick the oracle gives every candidate its
// replica's true load, plus the requests it sent that have not reached
// the replica yet.
func TestOracleLoad(t *testing.T) {
	// Real time, so that the long request is still running however
	// slowly this machine gets to look (it is canceled at the end).
	env, eps := testFleet(t, 2, 1)
	o := newOracle(env).(*oracle)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r0 := env.Fleet.Replica(0)
	go send(t, ctx, r0.URL(), `{"model":"`+modelsim.DefaultModel+`","messages":[{"role":"user","content":"x"}],"max_tokens":5000,"stream":true}`)
	deadline := time.Now().Add(30 * time.Second)
	for r0.Load().Running != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	req := &picker.Request{Model: modelsim.DefaultModel, Body: []byte(`{"model":"` + modelsim.DefaultModel + `","messages":[{"role":"user","content":"y"}]}`)}
	got, err := o.Pick(req, eps)
	if err != nil {
		t.Fatal(err)
	}
	if m := eps[0].Metrics(); m == nil || m.Running != 1 || m.KVCacheUsage <= 0 {
		t.Fatalf("replica 0's metrics %+v, want its running request", m)
	}
	if got != eps[1] {
		t.Fatalf("picked the busy replica %s", got.Address)
	}
	// The pick is on its way (the proxy holds it open) but never arrives:
	// the next pick sees it waiting there.
	got.Acquire(time.Now())
	_, _ = o.Pick(req, eps)
	if m := eps[1].Metrics(); m.Waiting != 1 {
		t.Fatalf("replica 1 waiting %v with a request on its way", m.Waiting)
	}
	// Released (refused, say): no longer counted.
	got.Release()
	_, _ = o.Pick(req, eps)
	if m := eps[1].Metrics(); m.Waiting != 0 {
		t.Fatalf("replica 1 waiting %v after the proxy released the request", m.Waiting)
	}
}

// TestTruthPrefix: the source reports each replica's true cached prefix
// of the request, -1 for an endpoint outside the fleet, and gives up on a
// body no replica would serve.
func TestTruthPrefix(t *testing.T) {
	env, eps := testFleet(t, 2, 0.05)
	o := newOracle(env).(*oracle)
	system := strings.Repeat("abcd", 500)
	body := func(q string) string {
		return `{"model":"` + modelsim.DefaultModel + `","messages":[{"role":"system","content":"` + system + `"},{"role":"user","content":"` + q + `"}],"max_tokens":1}`
	}
	send(t, context.Background(), env.Fleet.Replica(1).URL(), body("first"))
	cands := []picker.Candidate{{Endpoint: eps[0]}, {Endpoint: eps[1]}, {Endpoint: endpoints.New(endpoints.Spec{Address: "10.9.9.9:1"})}}
	out := make([]int, 3)
	if !o.prefix.CachedTokens(&picker.Request{Body: []byte(body("second"))}, cands, out) {
		t.Fatal("no answer")
	}
	if out[0] != 0 || out[1] < 500 || out[2] != -1 {
		t.Fatalf("cached tokens %v, want [0 ≥500 -1]", out)
	}
	if o.prefix.CachedTokens(&picker.Request{Body: []byte(`{"model":`)}, cands, out) {
		t.Fatal("a bad body answered")
	}
	// The scheduler hears it: with equal (idle) load the replica holding
	// the prefix wins the first pick of a fresh oracle, whose own index
	// knows nothing (a coin flip each without the source).
	for i := range 6 {
		fresh := newOracle(env)
		got, err := fresh.Pick(&picker.Request{Model: modelsim.DefaultModel, Body: []byte(body("third"))}, eps[:2])
		if err != nil || got != eps[1] {
			t.Fatalf("oracle %d picked %v (%v); want the replica holding the prefix", i, got.Address, err)
		}
	}
}
