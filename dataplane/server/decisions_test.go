package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/internal/testwait"
	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/server"
	"github.com/infergate/infergate/dataplane/upstream"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func decisions(t *testing.T, m *server.Manager, query string) []pipeline.RecentDecision {
	t.Helper()
	code, body := adminGet(t, m, "/decisions"+query)
	if code != http.StatusOK {
		t.Fatalf("/decisions%s: %d %s", query, code, body)
	}
	var ds []pipeline.RecentDecision
	if err := json.Unmarshal([]byte(body), &ds); err != nil {
		t.Fatalf("/decisions%s answered %v: %s", query, err, body)
	}
	return ds
}

// TestDecisions: the admin API keeps each pool's recent picks explained —
// every pick while the pool picks less than once per DecisionEvery, with
// the request's id, the endpoint it went to and every candidate's terms —
// and no more than one per DecisionEvery under load.
func TestDecisions(t *testing.T) {
	var waiting, hits atomic.Int64
	a, b := loadedModel(t, &waiting, &hits), loadedModel(t, &waiting, &hits)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(a), addr(b)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("chat", "/v1", ref(pool, 1))}, []backendSpec{pool}))
	if ds := decisions(t, m, ""); len(ds) != 0 {
		t.Fatalf("decisions before any request: %+v", ds)
	}

	served := map[string]string{}
	for i := range 3 {
		id := fmt.Sprintf("req-%d", i)
		resp := post(t, port, map[string]string{upstream.RequestIDHeader: id}, `{"model":"m","max_tokens":5,"prompt":"hello"}`)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		served[id] = resp.Header.Get(upstream.ServedHeader)
		time.Sleep(pipeline.DecisionEvery + 10*time.Millisecond) // idle: every pick kept
	}
	ds := decisions(t, m, "")
	if len(ds) != 3 {
		t.Fatalf("%d decisions after 3 idle picks: %+v", len(ds), ds)
	}
	for i, d := range ds {
		want := fmt.Sprintf("req-%d", 2-i) // newest first
		if d.RequestID != want || d.Pool != "ns/pool" || d.Chosen != served[want] || d.OutputTokens != 5 || len(d.Candidates) != 2 {
			t.Errorf("decision %d: %+v, want %s served by %s", i, d, want, served[want])
		}
		for _, c := range d.Candidates {
			if c.Cost <= 0 || c.Prefill <= 0 {
				t.Errorf("decision %d candidate %+v", i, c)
			}
		}
		if i > 0 && !d.At.Before(ds[i-1].At) {
			t.Errorf("decisions not newest first: %v then %v", ds[i-1].At, d.At)
		}
	}
	if ds := decisions(t, m, "?pool=ns/pool&limit=1"); len(ds) != 1 || ds[0].RequestID != "req-2" {
		t.Errorf("?pool&limit=1: %+v", ds)
	}
	for q, want := range map[string]int{"?pool=ns/other": 404, "?limit=x": 400, "?limit=-1": 400} {
		if code, body := adminGet(t, m, "/decisions"+q); code != want || !strings.Contains(body, "error") {
			t.Errorf("/decisions%s: %d %s, want %d", q, code, body, want)
		}
	}

	// Back to back: at most one kept per DecisionEvery of the burst.
	start := time.Now()
	const burst = 200
	for range burst {
		resp := post(t, port, nil, `{"model":"m","max_tokens":5,"prompt":"hello"}`)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	elapsed := time.Since(start)
	kept := 0
	for _, d := range decisions(t, m, "") {
		if !d.At.Before(start) {
			kept++
		}
	}
	bound := int(elapsed/pipeline.DecisionEvery) + 1
	if kept < 1 || kept > bound || kept > pipeline.DecisionRingSize {
		t.Errorf("%d of %d back-to-back picks kept in %v, want 1..%d", kept, burst, elapsed, min(bound, pipeline.DecisionRingSize))
	}
	testwait.Until(t, "all requests counted", func() bool { return hits.Load() == burst+3 })
}
