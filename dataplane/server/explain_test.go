package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/infergate/infergate/dataplane/internal/testwait"
	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/server"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// adminPost posts body to m's admin API at path.
func adminPost(t *testing.T, m *server.Manager, path, body string) (int, string) {
	t.Helper()
	admin := httptest.NewServer(m.AdminHandler())
	defer admin.Close()
	resp, err := http.Post(admin.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func explain(t *testing.T, m *server.Manager, req pipeline.ExplainRequest) pipeline.Explanation {
	t.Helper()
	raw, _ := json.Marshal(req)
	code, body := adminPost(t, m, "/explain", string(raw))
	if code != http.StatusOK {
		t.Fatalf("/explain %d: %s", code, body)
	}
	var ex pipeline.Explanation
	if err := json.Unmarshal([]byte(body), &ex); err != nil {
		t.Fatalf("/explain answered %v: %s", err, body)
	}
	return ex
}

// TestExplain: the admin API explains how a request would be routed and
// picked — route, backend, model rule, priority, saturation, candidates
// and the outcome (pick, shed, invalid, no route) — and sends nothing to
// a model server.
func TestExplain(t *testing.T) {
	var waitingA, waitingB, hits atomic.Int64
	a, b := loadedModel(t, &waitingA, &hits), loadedModel(t, &waitingB, &hits)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(a), addr(b)}}
	port := freePort(t)
	m := newManager(t)
	rs := snapshot([]uint32{port}, []*snapshotv1.Route{route("chat", "/v1", ref(pool, 1))}, []backendSpec{pool},
		&snapshotv1.ModelRule{Name: gw + "/fr", Pool: pool.resourceName(), ModelName: "food-review",
			Targets: []*snapshotv1.TargetModel{{Name: "food-review-lora", Weight: 1}}},
		&snapshotv1.ModelRule{Name: gw + "/batch", Pool: pool.resourceName(), Objective: "batch", Priority: -1})
	apply(t, m, withProfile(rs, &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "queue", Weight: 1}}, ShedSheddable: true}))
	testwait.Until(t, "both pods scraped", func() bool {
		n := 0
		for _, s := range m.Endpoints().Statuses() {
			if s.Metrics != nil {
				n++
			}
		}
		return n == 2
	})
	chat := `{"model":"food-review","messages":[{"role":"user","content":"hi"}]}`

	ex := explain(t, m, pipeline.ExplainRequest{Body: chat})
	if ex.Outcome != "pick" || ex.HTTPRoute != "ns/chat" || ex.Backend != "ns/pool" || !ex.Pool ||
		ex.Model != "food-review" || ex.TargetModel != "food-review-lora" || ex.Port != port || len(ex.Candidates) != 2 {
		t.Fatalf("explanation %+v", ex)
	}
	for _, c := range ex.Candidates {
		if !c.Fresh || c.Waiting == nil || *c.Waiting != 0 || c.KVCache == nil {
			t.Errorf("candidate %+v: want fresh metrics", c)
		}
		if c.Terms != nil {
			t.Errorf("candidate %+v: cost terms from weighted scorers", c)
		}
	}
	if ex.Chosen != "" || !strings.Contains(ex.Note, "weighted scorers") {
		t.Errorf("weighted scorers explained: chosen %q, note %q", ex.Chosen, ex.Note)
	}
	if ex.Saturation == nil || *ex.Saturation >= 1 {
		t.Errorf("saturation %v of an idle pool", ex.Saturation)
	}

	// Saturated: a sheddable request (objective batch) would get 429.
	waitingA.Store(10)
	waitingB.Store(10)
	testwait.Until(t, "the pool saturated", func() bool {
		ex = explain(t, m, pipeline.ExplainRequest{Body: chat, Headers: http.Header{"X-Gateway-Inference-Objective": {"batch"}}})
		return ex.Outcome == "shed"
	})
	if ex.Priority != -1 || ex.Saturation == nil || *ex.Saturation < 1 {
		t.Errorf("shed explanation %+v", ex)
	}

	if ex := explain(t, m, pipeline.ExplainRequest{Body: `{"model":"food-review"}`}); ex.Outcome != "invalid" || !strings.Contains(ex.Reason, "messages") {
		t.Errorf("a chat without messages: %+v", ex)
	}
	if ex := explain(t, m, pipeline.ExplainRequest{Path: "/other", Body: chat}); ex.Outcome != "no route" {
		t.Errorf("a path no route takes: %+v", ex)
	}
	for _, bad := range []string{`{"port": 1}`, `{"bogus": true}`, `not json`} {
		if code, body := adminPost(t, m, "/explain", bad); code != http.StatusBadRequest || !strings.Contains(body, "error") {
			t.Errorf("explain %s: %d %s", bad, code, body)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("explaining sent %d requests to model servers", n)
	}

	// The default profile (the cost model) explains its pick: every
	// candidate's inputs and cost terms, the chosen one the cheapest
	// within its tolerance, max_tokens as the output estimate.
	waitingA.Store(0)
	waitingB.Store(6)
	apply(t, m, withProfile(rs, nil))
	testwait.Until(t, "the new waiting counts scraped", func() bool {
		ex = explain(t, m, pipeline.ExplainRequest{Body: `{"model":"food-review","max_tokens":40,"messages":[{"role":"user","content":"hi"}]}`})
		return len(ex.Candidates) == 2 && ex.Candidates[0].Waiting != nil && ex.Candidates[1].Waiting != nil &&
			*ex.Candidates[0].Waiting+*ex.Candidates[1].Waiting == 6
	})
	if ex.Outcome != "pick" || ex.Chosen != addr(a) || ex.OutputTokens != 40 || ex.PromptTokens <= 0 || ex.Note != "" {
		t.Fatalf("cost-model explanation %+v, want %s chosen (nothing waits there)", ex, addr(a))
	}
	cost := map[string]float64{}
	for _, c := range ex.Candidates {
		if c.Terms == nil || c.Terms.Prefill <= 0 || c.Terms.Decode <= 0 || c.Terms.Cost <= 0 {
			t.Fatalf("candidate %s terms %+v", c.Address, c.Terms)
		}
		cost[c.Address] = c.Terms.Cost
	}
	if cost[addr(b)] <= cost[addr(a)] {
		t.Errorf("costs %v: the endpoint with 6 waiting is not dearer", cost)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("explaining sent %d requests to model servers", n)
	}
}

// A pool with an external endpoint picker: explain does not ask it (that
// would send it a request) and says so; the candidates carry the pool's
// own picker's terms.
func TestExplainExternalPicker(t *testing.T) {
	pp := newPickerPool(t, 2, true, nil, nil)
	ex := explain(t, pp.m, pipeline.ExplainRequest{Body: `{"model":"m","messages":[{"role":"user","content":"hi"}]}`})
	if ex.Outcome != "pick" || ex.Chosen != "" || !strings.Contains(ex.Note, "ns/epp:9002") || len(ex.Candidates) != 2 {
		t.Fatalf("explanation %+v", ex)
	}
	for _, c := range ex.Candidates {
		if c.Terms == nil || c.Terms.Cost <= 0 {
			t.Errorf("candidate %s terms %+v", c.Address, c.Terms)
		}
	}
}
