package endpoints

import (
	"fmt"
	"slices"

	dto "github.com/prometheus/client_model/go"
)

// series selects the samples of one metric family, optionally only those
// with one label value: Triton's TensorRT-LLM backend puts several signals
// in one family told apart by a label.
type series struct{ name, label, value string }

func (s series) matches(m *dto.Metric) bool {
	if s.label == "" {
		return true
	}
	for _, l := range m.GetLabel() {
		if l.GetName() == s.label {
			return l.GetValue() == s.value
		}
	}
	return false
}

func (s series) String() string {
	if s.label == "" {
		return s.name
	}
	return fmt.Sprintf("%s{%s=%q}", s.name, s.label, s.value)
}

func plain(names ...string) []series {
	out := make([]series, len(names))
	for i, n := range names {
		out[i] = series{name: n}
	}
	return out
}

// metricNames are the series carrying one engine's load signals.
type metricNames struct {
	waiting []series
	running []series
	kv      []series // first present wins (newer name first)
	// kvUsed / kvMax blocks stand in for kv when none of it is present
	// (Triton releases without the "fraction" block type).
	kvUsed, kvMax series
	lora          string // info gauge with adapter labels; "" when the engine has none
	shape         cacheShape
}

// tritonRequests and tritonKVBlocks select one signal of Triton Inference
// Server's TensorRT-LLM backend families by its type label.
func tritonRequests(typ string) series {
	return series{"nv_trt_llm_request_metrics", "request_type", typ}
}

func tritonKVBlocks(typ string) series {
	return series{"nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", typ}
}

// engineMetrics maps the pod label inference.networking.k8s.io/engine-type
// to its metric names (the Inference Extension's model-server protocol).
// Read-only.
var engineMetrics = map[string]metricNames{
	"vllm": {
		waiting: plain("vllm:num_requests_waiting"),
		running: plain("vllm:num_requests_running"),
		kv:      plain("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
		lora:    "vllm:lora_requests_info",
	},
	"sglang": {
		waiting: plain("sglang:num_queue_reqs"),
		running: plain("sglang:num_running_reqs"),
		kv:      plain("sglang:token_usage"),
	},
	"trtllm": {
		waiting: plain("trtllm_num_requests_waiting"),
		running: plain("trtllm_num_requests_running"),
		kv:      plain("trtllm_kv_cache_utilization"),
	},
	"triton": {
		waiting: []series{tritonRequests("waiting")},
		running: []series{tritonRequests("scheduled")},
		kv:      []series{tritonKVBlocks("fraction")},
		kvUsed:  tritonKVBlocks("used"),
		kvMax:   tritonKVBlocks("max"),
	},
}

// engineAliases are other names of an engine type: the Inference
// Extension's conformance configs call Triton with TensorRT-LLM
// "triton-tensorrt-llm".
var engineAliases = map[string]string{"triton-tensorrt-llm": "triton"}

func namesFor(engine string) metricNames {
	if a, ok := engineAliases[engine]; ok {
		engine = a
	}
	n, ok := engineMetrics[engine]
	if !ok {
		engine = "vllm"
		n = engineMetrics[engine]
	}
	n.shape = cacheShapes[engine]
	return n
}

// families are the metric family names parse reads.
func (n metricNames) families() []string {
	var out []string
	add := func(ss ...series) {
		for _, s := range ss {
			if s.name != "" && !slices.Contains(out, s.name) {
				out = append(out, s.name)
			}
		}
	}
	add(n.waiting...)
	add(n.running...)
	add(n.kv...)
	add(n.kvUsed, n.kvMax)
	add(series{name: n.lora})
	add(series{name: n.shape.info}, n.shape.blocks, n.shape.per)
	return out
}
