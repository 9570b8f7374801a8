package endpoints_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/internal/testwait"
)

const vllmMetrics = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m1"} 3.0
vllm:num_requests_running{engine="0",model_name="m2"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m1"} %d
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m1"} 0.42
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="m1"} 1234
# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="m1"} 2
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m1"} 3
vllm:e2e_request_latency_seconds_sum{model_name="m1"} 4.5
vllm:e2e_request_latency_seconds_count{model_name="m1"} 3
`

// tritonMetrics is Triton Inference Server's TensorRT-LLM backend
// exposition (two models, one family per signal kind).
const tritonMetrics = `# HELP nv_trt_llm_request_metrics TRT LLM request metrics
# TYPE nv_trt_llm_request_metrics gauge
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="waiting",version="1"} 2
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="context",version="1"} 1
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="scheduled",version="1"} 4
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="max",version="1"} 512
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="active",version="1"} 6
nv_trt_llm_request_metrics{model="draft",request_type="waiting",version="1"} 1
nv_trt_llm_request_metrics{model="draft",request_type="scheduled",version="1"} 1
# HELP nv_trt_llm_kv_cache_block_metrics TRT LLM KV cache block metrics
# TYPE nv_trt_llm_kv_cache_block_metrics gauge
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per",model="tensorrt_llm",version="1"} 64
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 3000
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="free",model="tensorrt_llm",version="1"} 3000
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="tensorrt_llm",version="1"} 6000
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="tensorrt_llm",version="1"} 0.25
`

func TestParseEngine(t *testing.T) {
	m, err := endpoints.ParseEngine(strings.NewReader(fmt.Sprintf(vllmMetrics, 7)), "vllm")
	if err != nil {
		t.Fatal(err)
	}
	if m.Waiting != 7 || m.Running != 4 || m.KVCacheUsage != 0.42 {
		t.Fatalf("%+v", m)
	}
	m, err = endpoints.ParseEngine(strings.NewReader("# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc 0.5\n"), "")
	if err != nil || m.KVCacheUsage != 0.5 {
		t.Fatalf("old KV name: %+v %v", m, err)
	}
	m, err = endpoints.ParseEngine(strings.NewReader("sglang:num_queue_reqs 2\nsglang:token_usage 0.1\n"), "sglang")
	if err != nil || m.Waiting != 2 || m.KVCacheUsage != 0.1 {
		t.Fatalf("sglang: %+v %v", m, err)
	}
	m, err = endpoints.ParseEngine(strings.NewReader(tritonMetrics), "triton")
	if err != nil || m.Waiting != 3 || m.Running != 5 || m.KVCacheUsage != 0.25 {
		t.Fatalf("triton: %+v %v", m, err)
	}
	// Without the fraction block type, used / max.
	noFraction := strings.ReplaceAll(tritonMetrics, `kv_cache_block_type="fraction"`, `kv_cache_block_type="reused"`)
	m, err = endpoints.ParseEngine(strings.NewReader(noFraction), "triton-tensorrt-llm")
	if err != nil || m.KVCacheUsage != 0.5 {
		t.Fatalf("triton used/max: %+v %v", m, err)
	}
	if _, err := endpoints.ParseEngine(strings.NewReader(fmt.Sprintf(vllmMetrics, 1)), "triton"); err == nil {
		t.Fatal("vLLM names on a triton endpoint must be an error")
	}
	if _, err := endpoints.ParseEngine(strings.NewReader("up 1\n"), "vllm"); err == nil {
		t.Fatal("a body without load metrics must be an error")
	}
	if _, err := endpoints.ParseEngine(strings.NewReader("not { metrics"), "vllm"); err == nil {
		t.Fatal("garbage must be an error")
	}
}

// metricsServer serves vLLM metrics whose waiting queue the test sets.
func metricsServer(t *testing.T, waiting *atomic.Int64, hits *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		fmt.Fprintf(w, vllmMetrics, waiting.Load())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRegistryScrapes(t *testing.T) {
	var waiting, hits atomic.Int64
	waiting.Store(5)
	srv := metricsServer(t, &waiting, &hits)
	addr := strings.TrimPrefix(srv.URL, "http://")
	reg := endpoints.NewRegistry(slog.New(slog.DiscardHandler), endpoints.Options{Interval: 10 * time.Millisecond})
	t.Cleanup(reg.Close)

	eps := reg.Sync([]endpoints.Spec{
		{Address: addr, MetricsAddress: addr, EngineType: "vllm", Scrape: true},
		{Address: addr, MetricsAddress: addr}, // same address from a Service: merged
		{Address: "127.0.0.1:1", MetricsAddress: "127.0.0.1:1"},
	})
	if len(eps) != 2 || reg.Scraping() != 1 {
		t.Fatalf("endpoints %d, scraping %d", len(eps), reg.Scraping())
	}
	ep := eps[addr]
	testwait.Until(t, "the first scrape", func() bool { m := ep.Metrics(); return m != nil && m.Waiting == 5 })
	waiting.Store(9)
	testwait.Until(t, "a scrape seeing 9 waiting", func() bool { return ep.Metrics().Waiting == 9 })
	if m, fresh := ep.Fresh(time.Now(), time.Second); !fresh || m.KVCacheUsage != 0.42 {
		t.Fatalf("fresh %v %+v", fresh, m)
	}

	// The same spec keeps the same Endpoint (in-flight carries over).
	ep.Acquire(time.Now())
	again := reg.Sync([]endpoints.Spec{{Address: addr, MetricsAddress: addr, EngineType: "vllm", Scrape: true}})
	if again[addr] != ep || ep.InFlight() != 1 {
		t.Fatal("endpoint state must survive a config change")
	}
	ep.Release()
	st := reg.Statuses()
	if len(st) != 1 || !st[0].Scraped || st[0].Metrics == nil || st[0].MetricsAgeMs == nil {
		t.Fatalf("statuses: %+v", st)
	}

	// Removing the endpoint stops its scraper.
	reg.Sync(nil)
	if reg.Scraping() != 0 {
		t.Fatal("scraper still registered")
	}
	time.Sleep(30 * time.Millisecond) // let a scrape in progress finish
	before := hits.Load()
	time.Sleep(100 * time.Millisecond)
	if after := hits.Load(); after != before {
		t.Fatalf("scraper kept running: %d → %d hits", before, after)
	}
}

func TestScrapeErrorRecorded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	reg := endpoints.NewRegistry(slog.New(slog.DiscardHandler), endpoints.Options{Interval: 10 * time.Millisecond})
	t.Cleanup(reg.Close)
	ep := reg.Sync([]endpoints.Spec{{Address: addr, MetricsAddress: addr, Scrape: true}})[addr]
	testwait.Until(t, "the scrape error", func() bool { msg, _ := ep.LastError(); return strings.Contains(msg, "status 500") })
	if ep.Metrics() != nil {
		t.Fatal("no metrics expected")
	}
}
