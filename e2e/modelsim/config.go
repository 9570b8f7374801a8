package modelsim

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/infergate/infergate/e2e/modelsim/engine"
	"github.com/infergate/infergate/proto/tokenizer/cl100k"
)

// DefaultModel is the base model a replica serves unless told otherwise.
const DefaultModel = "meta-llama/Llama-3.1-8B-Instruct"

// Config describes one replica (every replica of a fleet shares it).
type Config struct {
	// Model is the base model; ServedModelNames, when set, replaces it as the
	// names clients may request (vLLM's --served-model-name).
	Model            string
	ServedModelNames []string
	// LoRAModules are adapter names, each also served as a model name.
	LoRAModules []string
	// Engine selects metric names: "vllm" (default), "sglang", "trtllm" or
	// "triton" (Triton Inference Server with the TensorRT-LLM backend).
	Engine string
	// Engine sizing and cost model (zero fields take engine defaults).
	EngineConfig engine.Config
	// TimeScale is wall seconds per simulated second (0.1 = ten times faster);
	// 0 means 1. Latencies reported in metrics and usage are simulated.
	TimeScale float64
	// Seed makes default output lengths, fail-rate draws and text deterministic.
	Seed uint64
	// Output length when a request has no max_tokens: uniform in
	// [DefaultOutputMin, DefaultOutputMax], drawn from Seed and the prompt.
	DefaultOutputMin, DefaultOutputMax int
	// EmbeddingDim is the default embedding length.
	EmbeddingDim int
	// Faults.
	FailRate     float64       // fraction of requests answered 500
	StartupDelay time.Duration // simulated; /health and the API answer 503 until it passed
	SlowFactor   float64       // multiplies step durations (slow mode); 0 means 1
	// MetricsFault breaks /metrics the way one of MetricsFaults says.
	MetricsFault string
	// KVEvents, when enabled, publishes KV-cache events (vLLM's --kv-events-config).
	KVEvents *KVEventsConfig
	// Tokenizer: "" or "bytes" tokenizes CharsPerToken bytes per token;
	// "cl100k" is a real BPE (cl100k_base with Llama 3's special tokens,
	// proto/tokenizer/cl100k), whose tokenizer.json a gateway can load.
	Tokenizer string
	// Logger; nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Model == "" {
		c.Model = DefaultModel
	}
	if c.Engine == "" {
		c.Engine = EngineVLLM
	}
	if !slices.Contains(Engines, c.Engine) {
		return c, fmt.Errorf("unknown engine %q (want one of %s)", c.Engine, strings.Join(Engines, ", "))
	}
	if c.TimeScale <= 0 {
		c.TimeScale = 1
	}
	if c.DefaultOutputMin <= 0 {
		c.DefaultOutputMin = 64
	}
	if c.DefaultOutputMax < c.DefaultOutputMin {
		c.DefaultOutputMax = max(c.DefaultOutputMin, 256)
	}
	if c.EmbeddingDim <= 0 {
		c.EmbeddingDim = 384
	}
	if c.FailRate < 0 || c.FailRate > 1 {
		return c, fmt.Errorf("fail rate %v outside [0,1]", c.FailRate)
	}
	if err := validMetricsFault(c.MetricsFault); err != nil {
		return c, err
	}
	if c.SlowFactor <= 0 {
		c.SlowFactor = 1
	}
	switch c.Tokenizer {
	case "", TokenizerBytes, cl100k.Name:
	default:
		return c, fmt.Errorf("unknown tokenizer %q (want %s or %s)", c.Tokenizer, TokenizerBytes, cl100k.Name)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// modelNames are the names a replica answers to, base names first.
func (c Config) modelNames() []string {
	names := c.ServedModelNames
	if len(names) == 0 {
		names = []string{c.Model}
	}
	return names
}
