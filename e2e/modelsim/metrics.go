package modelsim

import (
	"cmp"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/e2e/modelsim/engine"
)

// Engine flavours whose metric names the simulator can expose.
const (
	EngineVLLM   = "vllm"
	EngineSGLang = "sglang"
	EngineTRTLLM = "trtllm"
	// EngineTriton is Triton Inference Server with the TensorRT-LLM
	// backend: signals are label values of two gauge families.
	EngineTriton = "triton"
)

// Engines lists the flavours Config.Engine accepts.
var Engines = []string{EngineVLLM, EngineSGLang, EngineTRTLLM, EngineTriton}

// metricNames lists one model server's metric names; "" = not exposed.
type metricNames struct {
	waiting, running, kvUsage   string
	cacheInfo                   string
	cacheBlockSize, cacheBlocks string // cacheInfo label names
	tokensPerBlock, maxBlocks   string // trtllm's separate cache-shape gauges
	usedBlocks                  string
	loraInfo                    string
	prefixQueries, prefixHits   string
	cacheHitRate                string
	promptTokens, genTokens     string
	preemptions                 string
	ttft, itl, tpot, e2e, queue string
	extraLabels                 prometheus.Labels
	// modelLabel names the served model (default model_name).
	modelLabel string
}

func namesFor(flavor string) metricNames {
	switch flavor {
	case EngineSGLang:
		return metricNames{
			waiting: "sglang:num_queue_reqs", running: "sglang:num_running_reqs", kvUsage: "sglang:token_usage",
			cacheInfo: "sglang:cache_config_info", cacheBlockSize: "page_size", cacheBlocks: "num_pages",
			cacheHitRate: "sglang:cache_hit_rate",
			promptTokens: "sglang:prompt_tokens_total", genTokens: "sglang:generation_tokens_total",
			ttft: "sglang:time_to_first_token_seconds", itl: "sglang:inter_token_latency_seconds",
			e2e: "sglang:e2e_request_latency_seconds", queue: "sglang:queue_time_seconds",
		}
	case EngineTRTLLM:
		return metricNames{
			waiting: "trtllm_num_requests_waiting", running: "trtllm_num_requests_running",
			kvUsage: "trtllm_kv_cache_utilization", tokensPerBlock: "trtllm_kv_cache_tokens_per_block",
			maxBlocks: "trtllm_kv_cache_max_blocks",
			ttft:      "trtllm_time_to_first_token_seconds", tpot: "trtllm_time_per_output_token_seconds",
			e2e: "trtllm_e2e_request_latency_seconds", queue: "trtllm_request_queue_time_seconds",
			extraLabels: prometheus.Labels{"engine_type": "trtllm"},
		}
	case EngineTriton:
		// Names with {label=value} are one sample of a labelled family.
		const req, kv = "nv_trt_llm_request_metrics", "nv_trt_llm_kv_cache_block_metrics"
		return metricNames{
			waiting: req + "{request_type=waiting}", running: req + "{request_type=scheduled}",
			kvUsage: kv + "{kv_cache_block_type=fraction}", tokensPerBlock: kv + "{kv_cache_block_type=tokens_per}",
			maxBlocks: kv + "{kv_cache_block_type=max}", usedBlocks: kv + "{kv_cache_block_type=used}",
			modelLabel: "model", extraLabels: prometheus.Labels{"version": "1"},
		}
	default:
		return metricNames{
			waiting: "vllm:num_requests_waiting", running: "vllm:num_requests_running", kvUsage: "vllm:kv_cache_usage_perc",
			cacheInfo: "vllm:cache_config_info", cacheBlockSize: "block_size", cacheBlocks: "num_gpu_blocks",
			loraInfo:      "vllm:lora_requests_info",
			prefixQueries: "vllm:prefix_cache_queries_total", prefixHits: "vllm:prefix_cache_hits_total",
			promptTokens: "vllm:prompt_tokens_total", genTokens: "vllm:generation_tokens_total",
			preemptions: "vllm:num_preemptions_total",
			ttft:        "vllm:time_to_first_token_seconds", itl: "vllm:inter_token_latency_seconds",
			tpot: "vllm:time_per_output_token_seconds",
			e2e:  "vllm:e2e_request_latency_seconds", queue: "vllm:request_queue_time_seconds",
			extraLabels: prometheus.Labels{"engine": "0"},
		}
	}
}

// vLLM's histogram buckets (vllm/v1/metrics/loggers.py).
var (
	ttftBuckets    = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	itlBuckets     = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}
	latencyBuckets = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
)

// metricSet is one replica's registry. Gauges are refreshed from the engine
// at scrape time; counters and histograms are fed by engine events.
type metricSet struct {
	reg   *prometheus.Registry
	names metricNames

	waiting, running, kvUsage, cacheHitRate prometheus.Gauge
	usedBlocks                              prometheus.Gauge
	loraInfo                                *prometheus.GaugeVec
	loraAdmitted                            *prometheus.CounterVec
	loraEvictions                           prometheus.Counter
	prefixQueries, prefixHits               prometheus.Counter
	promptTokens, genTokens, preemptions    prometheus.Counter
	ttft, itl, tpot, e2e, queue             prometheus.Observer

	mu          sync.Mutex
	loraSeries  []prometheus.Labels // most recent last; bounded
	hitQueries  float64
	hitTokens   float64
	maxLoRAs    int
	loraEnabled bool
}

// maxLoRASeries bounds how many past label sets of lora_requests_info stay
// exposed. vLLM keeps every one it ever set (each with its timestamp), so
// scrapers must pick the newest; keeping a few old ones preserves that trait.
const maxLoRASeries = 8

func newMetricSet(flavor, model string, cfg engine.Config, loraEnabled bool) *metricSet {
	n := namesFor(flavor)
	m := &metricSet{reg: prometheus.NewRegistry(), names: n, maxLoRAs: cfg.MaxLoRAs, loraEnabled: loraEnabled}
	modelLabel := cmp.Or(n.modelLabel, "model_name")
	labels := prometheus.Labels{modelLabel: model}
	for k, v := range n.extraLabels {
		labels[k] = v
	}
	families := map[string]*prometheus.GaugeVec{}
	gauge := func(name, help string) prometheus.Gauge {
		if name == "" {
			return nil
		}
		family, label, value, ok := splitSelector(name)
		if !ok {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
			m.reg.MustRegister(g)
			return g
		}
		vec := families[family]
		if vec == nil {
			vec = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: family, Help: help, ConstLabels: labels}, []string{label})
			m.reg.MustRegister(vec)
			families[family] = vec
		}
		return vec.WithLabelValues(value)
	}
	counter := func(name, help string) prometheus.Counter {
		if name == "" {
			return nil
		}
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
		m.reg.MustRegister(c)
		return c
	}
	hist := func(name, help string, buckets []float64) prometheus.Observer {
		if name == "" {
			return nil
		}
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets, ConstLabels: labels})
		m.reg.MustRegister(h)
		return h
	}
	m.waiting = gauge(n.waiting, "Number of requests waiting to be processed.")
	m.running = gauge(n.running, "Number of requests in model execution batches.")
	m.kvUsage = gauge(n.kvUsage, "KV-cache usage. 1 means 100 percent usage.")
	m.cacheHitRate = gauge(n.cacheHitRate, "The prefix cache hit rate.")
	m.prefixQueries = counter(n.prefixQueries, "Prefix cache queries, in terms of number of queried tokens.")
	m.prefixHits = counter(n.prefixHits, "Prefix cache hits, in terms of number of cached tokens.")
	m.promptTokens = counter(n.promptTokens, "Number of prefill tokens processed.")
	m.genTokens = counter(n.genTokens, "Number of generation tokens processed.")
	m.preemptions = counter(n.preemptions, "Cumulative number of preemption from the engine.")
	m.ttft = hist(n.ttft, "Histogram of time to first token in seconds.", ttftBuckets)
	m.itl = hist(n.itl, "Histogram of inter-token latency in seconds.", itlBuckets)
	m.tpot = hist(n.tpot, "Histogram of time per output token in seconds.", itlBuckets)
	m.e2e = hist(n.e2e, "Histogram of e2e request latency in seconds.", latencyBuckets)
	m.queue = hist(n.queue, "Histogram of time spent in WAITING phase for request.", latencyBuckets)

	if n.cacheInfo != "" {
		info := prometheus.NewGauge(prometheus.GaugeOpts{Name: n.cacheInfo, Help: "Information of the LLMEngine CacheConfig", ConstLabels: prometheus.Labels{
			n.cacheBlockSize: strconv.Itoa(cfg.BlockSize),
			n.cacheBlocks:    strconv.Itoa(cfg.KVBlocks),
		}})
		info.Set(1)
		m.reg.MustRegister(info)
	}
	if g := gauge(n.tokensPerBlock, "Tokens per KV cache block."); g != nil {
		g.Set(float64(cfg.BlockSize))
	}
	if g := gauge(n.maxBlocks, "Maximum number of KV cache blocks."); g != nil {
		g.Set(float64(cfg.KVBlocks))
	}
	m.usedBlocks = gauge(n.usedBlocks, "Used KV cache blocks.")
	if n.loraInfo != "" && loraEnabled {
		m.loraInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: n.loraInfo, Help: "Running stats on lora requests."},
			[]string{"max_lora", "waiting_lora_adapters", "running_lora_adapters"})
		m.reg.MustRegister(m.loraInfo)
	}
	if loraEnabled {
		// Simulator ground truth, not a model-server metric: real engines
		// do not export whether an adapter was resident at admission.
		m.loraAdmitted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "modelsim_lora_requests_admitted_total",
			Help: "LoRA requests by whether their adapter was resident at first admission or had to be loaded.", ConstLabels: labels},
			[]string{"adapter"})
		m.loraEvictions = prometheus.NewCounter(prometheus.CounterOpts{Name: "modelsim_lora_evictions_total",
			Help: "Adapter loads that evicted an idle resident adapter.", ConstLabels: labels})
		m.reg.MustRegister(m.loraAdmitted, m.loraEvictions)
	}
	return m
}

// refresh sets gauges from the engine's current state. now is wall time: the
// LoRA info value is a Unix timestamp scrapers compare across series.
func (m *metricSet) refresh(s engine.Stats, now time.Time) {
	m.waiting.Set(float64(s.Waiting))
	m.running.Set(float64(s.Running))
	m.kvUsage.Set(s.KVUsage)
	if m.usedBlocks != nil {
		m.usedBlocks.Set(math.Round(s.KVUsage * float64(s.KVBlocks)))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cacheHitRate != nil && m.hitQueries > 0 {
		m.cacheHitRate.Set(m.hitTokens / m.hitQueries)
	}
	if m.loraInfo == nil {
		return
	}
	l := prometheus.Labels{
		"max_lora":              strconv.Itoa(m.maxLoRAs),
		"waiting_lora_adapters": engine.JoinAdapters(s.WaitingAdapters),
		"running_lora_adapters": engine.JoinAdapters(s.RunningAdapters),
	}
	m.loraInfo.With(l).Set(float64(now.UnixNano()) / 1e9)
	for i, old := range m.loraSeries {
		if sameLabels(old, l) {
			m.loraSeries = append(m.loraSeries[:i], m.loraSeries[i+1:]...)
			break
		}
	}
	m.loraSeries = append(m.loraSeries, l)
	if len(m.loraSeries) > maxLoRASeries {
		m.loraInfo.Delete(m.loraSeries[0])
		m.loraSeries = m.loraSeries[1:]
	}
}

// splitSelector splits "family{label=value}" (ok false for a plain name).
func splitSelector(s string) (family, label, value string, ok bool) {
	family, rest, ok := strings.Cut(s, "{")
	if !ok {
		return s, "", "", false
	}
	label, value, ok = strings.Cut(strings.TrimSuffix(rest, "}"), "=")
	return family, label, value, ok
}

func sameLabels(a, b prometheus.Labels) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

func observe(o prometheus.Observer, d time.Duration) {
	if o != nil {
		o.Observe(d.Seconds())
	}
}

func add(c prometheus.Counter, n int) {
	if c != nil && n > 0 {
		c.Add(float64(n))
	}
}

// Observe implements engine.Observer.
func (m *metricSet) Observe(ev engine.Event) {
	switch ev.Kind {
	case engine.EvQueued:
		observe(m.queue, ev.Dur)
	case engine.EvPrefixQuery:
		add(m.prefixQueries, ev.N)
		add(m.prefixHits, ev.M)
		m.mu.Lock()
		m.hitQueries += float64(ev.N)
		m.hitTokens += float64(ev.M)
		m.mu.Unlock()
	case engine.EvPromptDone:
		add(m.promptTokens, ev.N)
	case engine.EvFirstToken:
		observe(m.ttft, ev.Dur)
		add(m.genTokens, 1)
	case engine.EvToken:
		observe(m.itl, ev.Dur)
		add(m.genTokens, 1)
	case engine.EvPreempted:
		add(m.preemptions, 1)
	case engine.EvAdapterAdmitted:
		if m.loraAdmitted == nil {
			return
		}
		state := "resident"
		if ev.N > 0 {
			state = "loaded"
		}
		m.loraAdmitted.WithLabelValues(state).Inc()
		add(m.loraEvictions, ev.M)
	case engine.EvFinished:
		observe(m.e2e, ev.Dur)
		if ev.M > 1 {
			observe(m.tpot, (ev.Dur-ev.First)/time.Duration(ev.M-1))
		}
	}
}
