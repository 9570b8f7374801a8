package endpoints_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// FuzzParseEngine feeds arbitrary expositions to the parser of every engine:
// it must never panic, and a sample it accepts has every value in its
// domain (see endpoints.MaxRequests).
func FuzzParseEngine(f *testing.F) {
	f.Add([]byte(fmt.Sprintf(vllmMetrics, 3)))
	f.Add([]byte(loraMetrics))
	f.Add([]byte("sglang:num_queue_reqs 2\nsglang:token_usage NaN\n"))
	f.Add([]byte("trtllm_num_requests_waiting +Inf\n"))
	f.Add([]byte(tritonMetrics))
	f.Add([]byte("nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"used\"} 5\nnv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"max\"} 0\n"))
	f.Add([]byte("vllm:lora_requests_info{max_lora=\"x\",running_lora_adapters=\",,\"} 1\nvllm:num_requests_running 1\n"))
	f.Add([]byte("vllm:num_requests_waiting -3\nvllm:kv_cache_usage_perc 1.2\n"))
	f.Add([]byte("vllm:num_requests_waiting{model_name=\"a\"} 1e300\nvllm:num_requests_waiting{model_name=\"b\"} 1e300\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, eng := range []string{"vllm", "sglang", "trtllm", "triton", ""} {
			m, err := endpoints.ParseEngine(bytes.NewReader(b), eng)
			if err != nil {
				continue
			}
			if !inDomain(m.Waiting, endpoints.MaxRequests) || !inDomain(m.Running, endpoints.MaxRequests) ||
				!inDomain(m.KVCacheUsage, 1) || m.MaxLoRA < 0 || m.MaxLoRA > endpoints.MaxLoRASlots ||
				len(m.RunningAdapters) > endpoints.MaxAdapters || len(m.WaitingAdapters) > endpoints.MaxAdapters {
				t.Fatalf("engine %q accepted out-of-domain metrics %+v", eng, m)
			}
		}
	})
}

// inDomain reports whether v is a finite number in [0, hi].
func inDomain(v, hi float64) bool { return v >= 0 && v <= hi }
