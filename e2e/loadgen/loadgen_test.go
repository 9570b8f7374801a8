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
	rs, err := loadgen.Run(context.Background(), w, loadgen.Options{Targets: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
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
	rs, err := loadgen.Run(context.Background(), w, loadgen.Options{Targets: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
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
	if rs, err := loadgen.Run(ctx, w, loadgen.Options{Targets: []string{srv.URL}}); err != nil || len(rs) != 0 {
		t.Fatalf("canceled run returned %d results", len(rs))
	}
}

// TestSteadyThroughput: the window opens after a warm-up of as many
// completions as requests were in flight at the first completion and
// closes at the last send; completions before it (the start) and after it
// (the drain) do not dilute the rate.
func TestSteadyThroughput(t *testing.T) {
	ok := func(start, e2e time.Duration, tokens int) loadgen.Result {
		return loadgen.Result{Status: http.StatusOK, Start: start, TTFT: e2e / 2, E2E: e2e, OutputTokens: tokens}
	}
	rs := []loadgen.Result{
		// Two users send at once: the warm-up is two completions (1 s, 3 s).
		ok(0, time.Second, 1000),
		ok(0, 3*time.Second, 1000),
		ok(time.Second, 4*time.Second, 100),   // done at 5 s: in the window
		ok(3*time.Second, 4*time.Second, 100), // done at 7 s: in the window
		ok(5*time.Second, 2*time.Second, 100), // done at 7 s: in the window
		ok(7*time.Second, 10*time.Second, 50), // the last send, done at 17 s: drain
		{Status: http.StatusTooManyRequests, Start: 6 * time.Second, E2E: time.Millisecond},
	}
	s := loadgen.Summarize(rs, 1)
	if want := 300.0 / 4; s.SteadyTokensPerSec != want { // 3–7 s
		t.Fatalf("steady %v tokens/s, want %v", s.SteadyTokensPerSec, want)
	}
	if want := 2350.0 / 17; s.TokensPerSec != want {
		t.Fatalf("overall %v tokens/s, want %v", s.TokensPerSec, want)
	}
	// Every request sent before anything completed: no window.
	if s := loadgen.Summarize(rs[:2], 1); s.SteadyTokensPerSec != 0 {
		t.Fatalf("steady %v tokens/s without a window, want 0", s.SteadyTokensPerSec)
	}
}

// TestQuantile: nearest rank, index ⌊q·n⌋ clamped to the last value; the
// zero value without values.
func TestQuantile(t *testing.T) {
	v := []time.Duration{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, 10}, {0.5, 60}, {0.9, 100}, {0.99, 100}, {1, 100}} {
		if got := loadgen.Quantile(v, c.q); got != c.want {
			t.Errorf("Quantile(1..10 ×10, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := loadgen.Quantile([]float64{3}, 0.5); got != 3 {
		t.Errorf("one value: %v", got)
	}
	if got := loadgen.Quantile([]float64(nil), 0.5); got != 0 {
		t.Errorf("no values: %v", got)
	}
}
