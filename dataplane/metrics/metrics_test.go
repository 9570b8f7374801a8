package metrics_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/infergate/infergate/dataplane/metrics"
)

func TestSeriesAreBounded(t *testing.T) {
	p := metrics.New()
	for i := range metrics.MaxModelSeries + 50 {
		s := p.Series("model-"+strconv.Itoa(i), "t")
		s.Start(10)
		s.Done(metrics.Result{Start: time.Now(), End: time.Now(), Status: 200})
	}
	if n := testutil.CollectAndCount(p.Registry(), "inference_objective_request_total"); n != metrics.MaxModelSeries+1 {
		t.Fatalf("%d request series, want %d (the rest as %q)", n, metrics.MaxModelSeries+1, metrics.Other)
	}
	if p.Series("model-1", "t") != p.Series("model-1", "t") {
		t.Fatal("series not cached")
	}
}

func TestDoneRecordsTokensAndErrors(t *testing.T) {
	p := metrics.New()
	p.SetPools(func() []metrics.PoolStat {
		return []metrics.PoolStat{{Name: "ns/pool", AvgKVCache: 0.5, AvgQueue: 2, ReadyPods: 3}}
	})
	s := p.Series("m", "m-lora")
	t0 := time.Now()
	s.Start(100)
	s.Done(metrics.Result{Start: t0, FirstByte: t0.Add(10 * time.Millisecond), End: t0.Add(110 * time.Millisecond),
		Status: 200, HasUsage: true, Input: 20, Output: 11, Streamed: true})
	s.Start(100)
	s.Done(metrics.Result{Start: t0, End: t0.Add(time.Millisecond), Status: 503})
	for name, want := range map[string]int{
		"inference_objective_output_tokens":                            1,
		"infergate_proxy_time_per_output_token_seconds":                1,
		"inference_objective_request_error_total":                      1,
		"inference_pool_ready_pods":                                    1,
		"inference_objective_normalized_time_per_output_token_seconds": 1,
	} {
		if n := testutil.CollectAndCount(p.Registry(), name); n != want {
			t.Errorf("%s: %d series, want %d", name, n, want)
		}
	}
}

// Cached prompt tokens count only from responses that report them, and
// the ratio's denominator is those responses' prompt tokens; a cached
// count out of range is clamped to the prompt.
func TestCachedInputTokens(t *testing.T) {
	p := metrics.New()
	s := p.Series("m", "m")
	t0 := time.Now()
	for _, r := range []metrics.Result{
		{HasUsage: true, Input: 100, Output: 1, HasCached: true, Cached: 64},
		{HasUsage: true, Input: 50, Output: 1},                                   // no cached count reported
		{HasUsage: true, Input: 10, Output: 1, HasCached: true, Cached: 1 << 20}, // more than the prompt
	} {
		r.Start, r.End, r.Status = t0, t0.Add(time.Millisecond), 200
		s.Start(10)
		s.Done(r)
	}
	cached := counterSum(t, p, "infergate_proxy_cached_input_tokens_total")
	reported := counterSum(t, p, "infergate_proxy_cache_reported_input_tokens_total")
	if cached != 74 || reported != 110 {
		t.Fatalf("cached %v of reported %v prompt tokens, want 74 of 110", cached, reported)
	}
}

// counterSum sums the samples of the named counter family.
func counterSum(t *testing.T, p *metrics.Proxy, name string) float64 {
	t.Helper()
	fams, err := p.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
