package modelsim

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	dto "github.com/prometheus/client_model/go"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/e2e/modelsim/engine"
)

func chat(t *testing.T, r *Replica, modelName, prompt string, maxTokens int64) *openai.ChatCompletion {
	t.Helper()
	c := client(r)
	got, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:     modelName,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		MaxTokens: openai.Int(maxTokens),
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func histCount(t *testing.T, m *dto.Metric) uint64 {
	t.Helper()
	if m.GetHistogram() == nil {
		t.Fatal("not a histogram")
	}
	return m.GetHistogram().GetSampleCount()
}

func TestMetricsVLLM(t *testing.T) {
	f := startFleet(t, FleetConfig{Config: Config{LoRAModules: []string{"a", "b"}, EngineConfig: engineCfg(0, 0)}})
	r := f.Replica(0)
	prompt := longPrompt("metrics", 3000)
	chat(t, r, testModel, prompt, 10)
	chat(t, r, testModel, prompt, 10) // prefix hit
	chat(t, r, "a", "adapter prompt", 3)

	mfs := scrape(t, r)
	for _, name := range []string{
		"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
		"vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
		"vllm:prompt_tokens_total", "vllm:generation_tokens_total",
		"vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds",
		"vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds",
	} {
		l := labelsOf(single(t, mfs, name))
		if l["model_name"] != testModel || l["engine"] != "0" {
			t.Errorf("%s labels %v", name, l)
		}
	}
	info := labelsOf(single(t, mfs, "vllm:cache_config_info"))
	if info["block_size"] != "16" || info["num_gpu_blocks"] != "2048" {
		t.Errorf("cache_config_info labels %v", info)
	}
	if v := single(t, mfs, "vllm:generation_tokens_total").GetCounter().GetValue(); v != 23 {
		t.Errorf("generation tokens %v, want 23", v)
	}
	q := single(t, mfs, "vllm:prefix_cache_queries_total").GetCounter().GetValue()
	h := single(t, mfs, "vllm:prefix_cache_hits_total").GetCounter().GetValue()
	if h == 0 || h >= q {
		t.Errorf("prefix cache hits %v of %v queried", h, q)
	}
	if n := histCount(t, single(t, mfs, "vllm:time_to_first_token_seconds")); n != 3 {
		t.Errorf("ttft samples %d", n)
	}
	if n := histCount(t, single(t, mfs, "vllm:inter_token_latency_seconds")); n != 20 {
		t.Errorf("itl samples %d, want 20", n)
	}
	lora := mfs["vllm:lora_requests_info"]
	if lora == nil || len(lora.GetMetric()) == 0 {
		t.Fatal("lora_requests_info missing")
	}
	l := labelsOf(lora.GetMetric()[0])
	if l["max_lora"] != "1" || l["running_lora_adapters"] != "" || l["waiting_lora_adapters"] != "" {
		t.Errorf("lora info labels %v", l)
	}
	if ts := lora.GetMetric()[0].GetGauge().GetValue(); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("lora info value %v is not a current timestamp", ts)
	}
	scrape(t, r)
	if s := r.Stats(); s.Scrapes != 2 {
		t.Errorf("scrapes %d", s.Scrapes)
	}
}

// While a request runs, the gauges show it.
func TestMetricsGaugesUnderLoad(t *testing.T) {
	f := startFleet(t, FleetConfig{Config: Config{LoRAModules: []string{"a"}}})
	r := f.Replica(0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := client(r)
		_, _ = c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model: "a", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(longPrompt("x", 4000))}, MaxTokens: openai.Int(300),
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Running == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	mfs := scrape(t, r)
	if v := single(t, mfs, "vllm:num_requests_running").GetGauge().GetValue(); v != 1 {
		t.Errorf("running %v", v)
	}
	if v := single(t, mfs, "vllm:kv_cache_usage_perc").GetGauge().GetValue(); v <= 0 || v > 1 {
		t.Errorf("kv usage %v", v)
	}
	found := false
	for _, m := range mfs["vllm:lora_requests_info"].GetMetric() {
		if labelsOf(m)["running_lora_adapters"] == "a" {
			found = true
		}
	}
	if !found {
		t.Error("no lora_requests_info series with running adapter a")
	}
	<-done
	// The first request loaded the adapter: ground truth in stats and metrics.
	if s := r.Stats(); s.LoRA != (engine.LoRACounts{Loaded: 1}) || !slices.Equal(s.ResidentAdapters, []string{"a"}) {
		t.Errorf("LoRA stats %+v, resident %v", s.LoRA, s.ResidentAdapters)
	}
	loaded := false
	for _, m := range scrape(t, r)["modelsim_lora_requests_admitted_total"].GetMetric() {
		loaded = loaded || labelsOf(m)["adapter"] == "loaded" && m.GetCounter().GetValue() == 1
	}
	if !loaded {
		t.Error(`no modelsim_lora_requests_admitted_total{adapter="loaded"} 1`)
	}
}

func TestMetricsSGLang(t *testing.T) {
	f := startFleet(t, FleetConfig{Config: Config{Engine: EngineSGLang, EngineConfig: engineCfg(0, 0)}})
	r := f.Replica(0)
	chat(t, r, testModel, "hello", 4)
	mfs := scrape(t, r)
	for _, name := range []string{"sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage",
		"sglang:time_to_first_token_seconds", "sglang:inter_token_latency_seconds", "sglang:e2e_request_latency_seconds",
		"sglang:prompt_tokens_total", "sglang:generation_tokens_total"} {
		if l := labelsOf(single(t, mfs, name)); l["model_name"] != testModel {
			t.Errorf("%s labels %v", name, l)
		}
	}
	info := labelsOf(single(t, mfs, "sglang:cache_config_info"))
	if info["page_size"] != "16" || info["num_pages"] != "2048" {
		t.Errorf("cache_config_info labels %v", info)
	}
	for name := range mfs {
		if len(name) > 5 && name[:5] == "vllm:" {
			t.Errorf("vllm metric %s exposed in sglang mode", name)
		}
	}
}

func TestMetricsTRTLLM(t *testing.T) {
	f := startFleet(t, FleetConfig{Config: Config{Engine: EngineTRTLLM}})
	r := f.Replica(0)
	chat(t, r, testModel, "hello", 4)
	mfs := scrape(t, r)
	for _, name := range []string{"trtllm_num_requests_waiting", "trtllm_num_requests_running", "trtllm_kv_cache_utilization",
		"trtllm_time_to_first_token_seconds", "trtllm_e2e_request_latency_seconds"} {
		single(t, mfs, name)
	}
	if v := single(t, mfs, "trtllm_kv_cache_tokens_per_block").GetGauge().GetValue(); v != 16 {
		t.Errorf("tokens per block %v", v)
	}
	if v := single(t, mfs, "trtllm_kv_cache_max_blocks").GetGauge().GetValue(); v != 2048 {
		t.Errorf("max blocks %v", v)
	}
}

// Triton's TensorRT-LLM backend: signals are label values of two families,
// and the proxy's parser reads them back.
func TestMetricsTriton(t *testing.T) {
	f := startFleet(t, FleetConfig{Config: Config{Engine: EngineTriton}})
	r := f.Replica(0)
	chat(t, r, testModel, "hello", 4)
	mfs := scrape(t, r)
	want := map[string]float64{"tokens_per": 16, "max": 2048, "used": 0, "fraction": 0}
	for _, m := range mfs["nv_trt_llm_kv_cache_block_metrics"].GetMetric() {
		l := labelsOf(m)
		if v, ok := want[l["kv_cache_block_type"]]; !ok || v != m.GetGauge().GetValue() || l["model"] != testModel || l["version"] != "1" {
			t.Errorf("kv block sample %v = %v", l, m.GetGauge().GetValue())
		}
		delete(want, l["kv_cache_block_type"])
	}
	if len(want) > 0 {
		t.Errorf("kv block types missing: %v", want)
	}
	types := map[string]bool{}
	for _, m := range mfs["nv_trt_llm_request_metrics"].GetMetric() {
		types[labelsOf(m)["request_type"]] = true
	}
	if !types["waiting"] || !types["scheduled"] {
		t.Errorf("request types %v", types)
	}
	resp, err := http.Get(r.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := endpoints.ParseEngine(resp.Body, "triton"); err != nil {
		t.Errorf("the proxy cannot parse it: %v", err)
	}
}
