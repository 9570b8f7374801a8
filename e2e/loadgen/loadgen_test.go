package loadgen_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/loadgen"
)

func TestWorkloadsDeterministic(t *testing.T) {
	mk := func() loadgen.Workload {
		return loadgen.SharedPrefix("m", loadgen.SharedPrefixConfig{Groups: 4, UsersPerGroup: 2, SystemTokens: 100,
			QuestionTokens: 10, OutputTokens: 5, StartRate: 5, EndRate: 10, Duration: 5 * time.Second, Seed: 7})
	}
	a, b := mk(), mk()
	if len(a.Requests) == 0 || len(a.Requests) != len(b.Requests) {
		t.Fatalf("%d vs %d requests", len(a.Requests), len(b.Requests))
	}
	for i := range a.Requests {
		if a.Requests[i].At != b.Requests[i].At || !bytes.Equal(a.Requests[i].Body, b.Requests[i].Body) {
			t.Fatalf("request %d differs between runs of the same seed", i)
		}
		if i > 0 && a.Requests[i].At < a.Requests[i-1].At {
			t.Fatal("arrivals out of order")
		}
	}
	o := loadgen.Overload("m", loadgen.OverloadConfig{PromptTokens: 10, Output: 5, Rate: 200, Duration: 10 * time.Second,
		Critical: 0.2, Sheddable: 0.3, Seed: 1})
	n := map[string]int{}
	for _, r := range o.Requests {
		n[r.Class]++
	}
	if c := float64(n["critical"]) / float64(len(o.Requests)); c < 0.15 || c > 0.25 {
		t.Fatalf("critical share %.2f", c)
	}
	if o.Requests[0].Header().Get(loadgen.ObjectiveHeader) == "" {
		t.Fatal("objective header missing")
	}
}

func TestRunMeasuresStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(loadgen.ObjectiveHeader) == "sheddable" {
			http.Error(w, `{"error":{"message":"shed"}}`, http.StatusTooManyRequests)
			return
		}
		w.Header().Set("x-modelsim-replica", "r1")
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		w.Write([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"\",\"role\":\"assistant\"}}]}\n\n"))
		fl.Flush()
		time.Sleep(20 * time.Millisecond)
		for range 3 {
			w.Write([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi \"}}]}\n\n"))
			fl.Flush()
			time.Sleep(5 * time.Millisecond)
		}
		w.Write([]byte("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":64}}}\n\ndata: [DONE]\n\n"))
	}))
	defer srv.Close()
	w := loadgen.Workload{Requests: []loadgen.Request{
		{Body: []byte(`{}`), Class: "critical"},
		{At: 10 * time.Millisecond, Body: []byte(`{}`), Class: "sheddable"},
	}}
	rs := loadgen.Run(context.Background(), w, loadgen.Options{Targets: []string{srv.URL}})
	if !rs[0].OK() || rs[0].OutputTokens != 3 || rs[0].CachedTokens != 64 || rs[0].PromptTokens != 100 || rs[0].Replica != "r1" {
		t.Fatalf("%+v", rs[0])
	}
	if rs[0].TTFT < 20*time.Millisecond || rs[0].E2E < rs[0].TTFT {
		t.Fatalf("ttft %v e2e %v: the role chunk must not count as the first token", rs[0].TTFT, rs[0].E2E)
	}
	if rs[1].Status != http.StatusTooManyRequests {
		t.Fatalf("%+v", rs[1])
	}
	s := loadgen.Summarize(rs, 0.5)
	if s.OK != 1 || s.ByClass["sheddable"].Shed429 != 1 || s.CacheHit != 0.64 || s.TTFT.P50 < 0.04 {
		t.Fatalf("summary %+v", s)
	}
	if s.LoadImbalance(2) != 2 {
		t.Fatalf("imbalance %v", s.LoadImbalance(2))
	}
}

// TestRunClosedLoop: a closed-loop workload keeps exactly Concurrency
// requests open until all are sent, whatever their arrival times say.
func TestRunClosedLoop(t *testing.T) {
	var open, peak, total atomic.Int64
	// The first three requests wait for each other (at most a second), so
	// a closed loop of 3 must reach 3 open requests however slow the box.
	third := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := open.Add(1)
		defer open.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		switch total.Add(1) {
		case 3:
			close(third)
		case 1, 2:
			select {
			case <-third:
			case <-time.After(time.Second):
			}
		}
		time.Sleep(time.Millisecond)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"))
	}))
	defer srv.Close()
	w := loadgen.Workload{Concurrency: 3}
	for range 20 {
		// Arrival times far in the future must not matter closed-loop.
		w.Requests = append(w.Requests, loadgen.Request{At: time.Hour, Body: []byte(`{}`)})
	}
	rs := loadgen.Run(context.Background(), w, loadgen.Options{Targets: []string{srv.URL}})
	if len(rs) != 20 || total.Load() != 20 {
		t.Fatalf("%d results, %d requests served", len(rs), total.Load())
	}
	if peak.Load() != 3 {
		t.Fatalf("peak concurrency %d, want 3", peak.Load())
	}
	for i, r := range rs {
		if !r.OK() || r.Index != i {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	// Canceled early: only the requests sent are returned, in order.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if rs := loadgen.Run(ctx, w, loadgen.Options{Targets: []string{srv.URL}}); len(rs) != 0 {
		t.Fatalf("canceled run returned %d results", len(rs))
	}
}

// TestSteadyThroughput: only requests done by the last send count, over
// the first-to-last-send span; the drain after it does not dilute the rate.
func TestSteadyThroughput(t *testing.T) {
	ok := func(start, e2e time.Duration, tokens int) loadgen.Result {
		return loadgen.Result{Status: http.StatusOK, Start: start, TTFT: e2e / 2, E2E: e2e, OutputTokens: tokens}
	}
	rs := []loadgen.Result{
		ok(0, 2*time.Second, 100),             // done at 2 s
		ok(time.Second, 3*time.Second, 100),   // done at 4 s
		ok(4*time.Second, 10*time.Second, 50), // the last send, done at 14 s: drain
	}
	s := loadgen.Summarize(rs, 1)
	if s.SteadyTokensPerSec != 50 { // 200 tokens over 0–4 s
		t.Fatalf("steady %v tokens/s, want 50", s.SteadyTokensPerSec)
	}
	if want := 250.0 / 14; s.TokensPerSec != want {
		t.Fatalf("overall %v tokens/s, want %v", s.TokensPerSec, want)
	}
}
