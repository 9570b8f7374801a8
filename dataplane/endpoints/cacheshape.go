package endpoints

import (
	"strconv"

	dto "github.com/prometheus/client_model/go"
)

// cacheShape names the metrics that give a server's KV cache size: a
// block count and tokens per block, as labels of one info series (vLLM,
// SGLang) or as two gauges (TensorRT-LLM, Triton).
type cacheShape struct {
	info                  string // info metric carrying both as labels
	blocksLabel, perLabel string
	blocks, per           series // gauges, when info is ""
}

var cacheShapes = map[string]cacheShape{
	"vllm":   {info: "vllm:cache_config_info", blocksLabel: "num_gpu_blocks", perLabel: "block_size"},
	"sglang": {info: "sglang:cache_config_info", blocksLabel: "num_pages", perLabel: "page_size"},
	"trtllm": {blocks: series{name: "trtllm_kv_cache_max_blocks"}, per: series{name: "trtllm_kv_cache_tokens_per_block"}},
	"triton": {blocks: tritonKVBlocks("max"), per: tritonKVBlocks("tokens_per")},
}

// maxKVTokens bounds a plausible KV cache (tokens): a value above it is a
// broken exporter, not a cache.
const maxKVTokens = 1 << 32

// kvCapacity is the server's KV cache size in tokens, false when it does
// not say (or says something implausible).
func kvCapacity(fams map[string]*dto.MetricFamily, sh cacheShape) (float64, bool) {
	var blocks, per float64
	if sh.info != "" {
		f := fams[sh.info]
		if f == nil || len(f.GetMetric()) == 0 {
			return 0, false
		}
		for _, l := range f.GetMetric()[0].GetLabel() {
			v, err := strconv.ParseFloat(l.GetValue(), 64)
			if err != nil {
				continue
			}
			switch l.GetName() {
			case sh.blocksLabel:
				blocks = v
			case sh.perLabel:
				per = v
			}
		}
	} else {
		var ok1, ok2 bool
		var err1, err2 error
		blocks, ok1, err1 = maxOf(fams, sh.blocks, maxKVTokens)
		per, ok2, err2 = maxOf(fams, sh.per, maxKVTokens)
		if !ok1 || !ok2 || err1 != nil || err2 != nil {
			return 0, false
		}
	}
	tokens := blocks * per
	if !(blocks >= 1 && per >= 1 && tokens <= maxKVTokens) {
		return 0, false
	}
	return tokens, true
}
