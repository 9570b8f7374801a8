// Command modelsim runs a fleet of simulated vLLM (or SGLang / TRT-LLM)
// model servers in one process. See e2e/modelsim/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/infergate/infergate/e2e/modelsim"
	"github.com/infergate/infergate/e2e/modelsim/engine"
	"github.com/infergate/infergate/proto/tokenizer/cl100k"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "modelsim:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// run serves until ctx is done (SIGINT/SIGTERM in main), printing one line per
// replica to stdout once it listens.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("modelsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := engine.DefaultConfig()
	cost := def.Cost
	var (
		replicas    = fs.Int("replicas", 1, "number of replicas on consecutive loopback addresses starting at --address")
		address     = fs.String("address", "127.0.0.11", "first replica's IPv4 address")
		port        = fs.Int("port", 8000, "port of every replica (0 = random)")
		listen      = fs.String("listen", "", "comma-separated host:port list; overrides --replicas/--address/--port")
		namePrefix  = fs.String("name-prefix", "", "replica names <prefix>-<i> (default sim-<ip>-<port>)")
		model       = fs.String("model", modelsim.DefaultModel, "base model name")
		served      = fs.String("served-model-name", "", "comma-separated names to serve instead of --model")
		engineType  = fs.String("engine", modelsim.EngineVLLM, "metric names to expose: "+strings.Join(modelsim.Engines, ", "))
		loras       = fs.String("lora-modules", "", "comma-separated LoRA adapters served as model names (name or name=path)")
		maxLoRAs    = fs.Int("max-loras", def.MaxLoRAs, "adapters resident at once")
		loraLoad    = fs.Duration("lora-load-time", cost.LoRALoad, "simulated time to load an adapter")
		batched     = fs.Int("max-num-batched-tokens", def.MaxNumBatchedTokens, "token budget per engine step")
		maxSeqs     = fs.Int("max-num-seqs", def.MaxNumSeqs, "running sequences at most")
		maxWaiting  = fs.Int("max-waiting", def.MaxWaiting, "waiting queue bound (beyond it: 429)")
		kvBlocks    = fs.Int("kv-blocks", def.KVBlocks, "KV cache blocks")
		blockSize   = fs.Int("block-size", def.BlockSize, "tokens per KV block")
		maxModelLen = fs.Int("max-model-len", def.MaxModelLen, "prompt + output tokens at most")
		overhead    = fs.Duration("step-overhead", cost.Overhead, "cost model: fixed time per step")
		prefillOver = fs.Duration("prefill-overhead", cost.PrefillOverhead, "cost model: extra time for a step with prefill")
		prefillTok  = fs.Duration("prefill-token-cost", cost.PrefillToken, "cost model: time per prompt token")
		decodeSeq   = fs.Duration("decode-seq-cost", cost.DecodeSeq, "cost model: time per decoding sequence")
		ctxTok      = fs.Duration("context-token-cost", cost.ContextToken, "cost model: time per attended context token")
		timeScale   = fs.Float64("time-scale", 1, "wall seconds per simulated second (0.1 = ten times faster)")
		seed        = fs.Uint64("seed", 1, "seed for output lengths, text and fault draws")
		failRate    = fs.Float64("fail-rate", 0, "fraction of requests answered 500")
		startup     = fs.Duration("startup-delay", 0, "simulated time during which /health and the API answer 503")
		slow        = fs.Float64("slow-factor", 1, "multiply every step's duration (slow mode)")
		metricsBad  = fs.String("metrics-fault", "", "break /metrics: "+strings.Join(modelsim.MetricsFaults, ", ")+" (fault injection)")
		embedDim    = fs.Int("embedding-dim", 384, "embedding vector length")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error")
		tokenizer   = fs.String("tokenizer", modelsim.TokenizerBytes, "prompt tokenizer: bytes (4 bytes of rendered prompt per token) or cl100k (a real BPE: cl100k_base with Llama 3's special tokens, its ids in KV events and usage)")
		tokJSON     = fs.String("write-tokenizer-json", "", "with --tokenizer cl100k, write its Hugging Face tokenizer.json to this file first (for a gateway pool's kvEvents.tokenizer.path)")
		kvEvents    = fs.String("kv-events-config", "", `publish KV-cache events as vLLM does, same JSON, e.g. '{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557","replay_endpoint":"tcp://*:5558"}' (a * host is each replica's own address; port 0 picks one)`)
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var kvCfg *modelsim.KVEventsConfig
	if *kvEvents != "" {
		var err error
		if kvCfg, err = modelsim.ParseKVEventsConfig(*kvEvents); err != nil {
			return fmt.Errorf("--kv-events-config: %w", err)
		}
	}
	if *tokJSON != "" {
		if *tokenizer != cl100k.Name {
			return fmt.Errorf("--write-tokenizer-json needs --tokenizer %s", cl100k.Name)
		}
		js, err := cl100k.TokenizerJSON()
		if err == nil {
			err = os.WriteFile(*tokJSON, js, 0o644)
		}
		if err != nil {
			return fmt.Errorf("--write-tokenizer-json: %w", err)
		}
	}
	var adapters []string
	for _, l := range splitList(*loras) {
		name, _, _ := strings.Cut(l, "=")
		adapters = append(adapters, name)
	}
	fc := modelsim.FleetConfig{
		Config: modelsim.Config{
			Model:            *model,
			ServedModelNames: splitList(*served),
			LoRAModules:      adapters,
			Engine:           *engineType,
			EngineConfig: engine.Config{
				MaxNumBatchedTokens: *batched, MaxNumSeqs: *maxSeqs, MaxWaiting: *maxWaiting,
				KVBlocks: *kvBlocks, BlockSize: *blockSize, MaxModelLen: *maxModelLen, MaxLoRAs: *maxLoRAs,
				Cost: engine.CostModel{Overhead: *overhead, PrefillOverhead: *prefillOver, PrefillToken: *prefillTok,
					DecodeSeq: *decodeSeq, ContextToken: *ctxTok, LoRALoad: *loraLoad},
			},
			TimeScale:    *timeScale,
			Seed:         *seed,
			EmbeddingDim: *embedDim,
			FailRate:     *failRate,
			StartupDelay: *startup,
			SlowFactor:   *slow,
			MetricsFault: *metricsBad,
			KVEvents:     kvCfg,
			Tokenizer:    *tokenizer,
			Logger:       logger,
		},
		Replicas:   *replicas,
		Address:    *address,
		Port:       port,
		Listen:     splitList(*listen),
		NamePrefix: *namePrefix,
	}
	fleet, err := modelsim.StartFleet(ctx, fc)
	if err != nil {
		return err
	}
	for _, r := range fleet.Replicas() {
		fmt.Fprintf(stdout, "modelsim replica %s listening on %s\n", r.Name(), r.URL())
		if a := r.KVEventsAddr(); a != "" {
			fmt.Fprintf(stdout, "modelsim replica %s kv events on %s replay %s\n", r.Name(), a, r.KVReplayAddr())
		}
	}
	<-ctx.Done()
	logger.Info("shutting down", "replicas", fleet.Len())
	start := time.Now()
	err = fleet.Close()
	logger.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
	return err
}
