package endpoints_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// FuzzParseEngine feeds arbitrary expositions to the parser of every engine:
// it must never panic and never report negative or non-finite load.
func FuzzParseEngine(f *testing.F) {
	f.Add([]byte(fmt.Sprintf(vllmMetrics, 3)))
	f.Add([]byte(loraMetrics))
	f.Add([]byte("sglang:num_queue_reqs 2\nsglang:token_usage NaN\n"))
	f.Add([]byte("trtllm_num_requests_waiting +Inf\n"))
	f.Add([]byte(tritonMetrics))
	f.Add([]byte("nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"used\"} 5\nnv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"max\"} 0\n"))
	f.Add([]byte("vllm:lora_requests_info{max_lora=\"x\",running_lora_adapters=\",,\"} 1\nvllm:num_requests_running 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, eng := range []string{"vllm", "sglang", "trtllm", "triton", ""} {
			m, err := endpoints.ParseEngine(bytes.NewReader(b), eng)
			if err != nil {
				continue
			}
			if m.MaxLoRA < 0 || m.Waiting != m.Waiting || m.KVCacheUsage != m.KVCacheUsage {
				t.Fatalf("bad metrics %+v", m)
			}
		}
	})
}
