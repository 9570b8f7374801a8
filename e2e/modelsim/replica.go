package modelsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/infergate/infergate/e2e/modelsim/engine"
	"github.com/infergate/infergate/proto/tokenizer/cl100k"
)

// Header names the replica on every response.
const ReplicaHeader = "x-modelsim-replica"

// FailHeader on a request forces the given HTTP error status (fault injection).
const FailHeader = "x-modelsim-fail"

// Replica is one simulated model server: an engine plus its HTTP API.
type Replica struct {
	name    string
	addr    string
	cfg     Config
	clock   *engine.Clock
	eng     *engine.Engine
	metrics *metricSet
	mux     *http.ServeMux
	readyAt time.Time // simulated
	created int64

	seq         atomic.Uint64
	failRate    atomic.Uint64 // float64 bits
	unavailable atomic.Bool

	rngMu sync.Mutex
	rng   *rand.Rand

	kv *kvPublisher // KV event publisher; nil when events are off

	tok *cl100k.Encoder // Config.Tokenizer; nil: bytes

	served, failed, promptTokens, cachedTokens, genTokens, scrapes atomic.Int64
}

// ReplicaStats are a replica's counters since start plus its current gauges.
type ReplicaStats struct {
	Served          int64 // requests answered successfully
	Failed          int64 // requests answered with an error status
	PromptTokens    int64
	CachedTokens    int64 // prompt tokens served from the prefix cache
	GeneratedTokens int64
	Scrapes         int64 // GET /metrics count
	Waiting         int
	Running         int
	KVUsage         float64
	// LoRA is the ground truth of adapter placement: requests whose adapter
	// was resident at admission, requests that loaded it, and evictions.
	LoRA engine.LoRACounts
	// ResidentAdapters are the adapters in LoRA slots now, running or idle
	// (vllm:lora_requests_info shows only running and waiting ones).
	ResidentAdapters []string
}

// NewReplica builds a replica named name on clock (shared by a fleet so all
// replicas agree on simulated time). Its engine runs once Run is called; its
// API is ServeHTTP.
func NewReplica(name string, cfg Config, clock *engine.Clock) (*Replica, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if clock == nil {
		clock = engine.NewClock(cfg.TimeScale)
	}
	r := &Replica{
		name:    name,
		cfg:     cfg,
		clock:   clock,
		readyAt: clock.Now().Add(cfg.StartupDelay),
		created: time.Now().Unix(),
		rng:     rand.New(rand.NewPCG(cfg.Seed, xxhash.Sum64String(name))),
	}
	if r.tok, err = newTokenizer(cfg.Tokenizer); err != nil {
		return nil, err
	}
	ecfg := cfg.EngineConfig.WithDefaults()
	r.metrics = newMetricSet(cfg.Engine, cfg.modelNames()[0], ecfg, len(cfg.LoRAModules) > 0)
	r.eng = engine.New(ecfg, clock, r.metrics)
	r.eng.SetSlowFactor(cfg.SlowFactor)
	r.failRate.Store(math.Float64bits(cfg.FailRate))

	r.mux = http.NewServeMux()
	r.mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, req *http.Request) { r.generate(w, req, true) })
	r.mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, req *http.Request) { r.generate(w, req, false) })
	r.mux.HandleFunc("POST /v1/embeddings", r.embeddings)
	r.mux.HandleFunc("GET /v1/models", r.models)
	r.mux.HandleFunc("GET /health", r.health)
	r.mux.HandleFunc("POST /reset_prefix_cache", r.resetPrefixCache)
	var metricsHandler http.Handler = promhttp.HandlerFor(r.metrics.reg, promhttp.HandlerOpts{})
	if cfg.MetricsFault != "" {
		metricsHandler = r.faultyMetrics(metricsHandler, cfg.MetricsFault)
	}
	r.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, req *http.Request) {
		r.scrapes.Add(1)
		r.metrics.refresh(r.eng.Stats(), time.Now())
		metricsHandler.ServeHTTP(w, req)
	})
	r.mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		r.fail(w, &apiError{Status: http.StatusNotFound, Type: "NotFoundError", Message: "no route for " + req.Method + " " + req.URL.Path})
	})
	return r, nil
}

// Run drives the engine until ctx is done.
func (r *Replica) Run(ctx context.Context) { r.eng.Run(ctx) }

// Name is the replica's name (also in every response's ReplicaHeader and id).
func (r *Replica) Name() string { return r.name }

// Addr is the host:port the replica listens on ("" when not listening).
func (r *Replica) Addr() string { return r.addr }

// URL is the replica's base URL, e.g. http://127.0.0.11:8000.
func (r *Replica) URL() string { return "http://" + r.addr }

// Engine exposes the replica's engine (stats, slow mode).
func (r *Replica) Engine() *engine.Engine { return r.eng }

// SetFailRate changes the fraction of requests answered 500.
func (r *Replica) SetFailRate(p float64) { r.failRate.Store(math.Float64bits(p)) }

// SetUnavailable makes /health and the API answer 503 (true) or serve again
// (false), e.g. to simulate a pod turning unready.
func (r *Replica) SetUnavailable(down bool) { r.unavailable.Store(down) }

// SetSlowFactor switches slow mode on (f > 1) or off (f = 1).
func (r *Replica) SetSlowFactor(f float64) { r.eng.SetSlowFactor(f) }

// Stats returns counters and gauges.
func (r *Replica) Stats() ReplicaStats {
	s := r.eng.Stats()
	return ReplicaStats{
		Served:           r.served.Load(),
		Failed:           r.failed.Load(),
		PromptTokens:     r.promptTokens.Load(),
		CachedTokens:     r.cachedTokens.Load(),
		GeneratedTokens:  r.genTokens.Load(),
		Scrapes:          r.scrapes.Load(),
		Waiting:          s.Waiting,
		Running:          s.Running,
		KVUsage:          s.KVUsage,
		LoRA:             s.LoRA,
		ResidentAdapters: s.ResidentAdapters,
	}
}

// ServeHTTP serves the OpenAI-compatible API, /health and /metrics.
func (r *Replica) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set(ReplicaHeader, r.name)
	r.mux.ServeHTTP(w, req)
}

func (r *Replica) ready() bool {
	return !r.unavailable.Load() && !r.clock.Now().Before(r.readyAt)
}

func (r *Replica) health(w http.ResponseWriter, _ *http.Request) {
	if !r.ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (r *Replica) fail(w http.ResponseWriter, e *apiError) {
	r.failed.Add(1)
	writeJSON(w, e.Status, errorBody{Error: errorDetail{Message: e.Message, Type: e.Type, Code: e.Status}})
}

func statusType(status int) string {
	switch status {
	case 400:
		return "BadRequestError"
	case 404:
		return "NotFoundError"
	case 429:
		return "RateLimitError"
	case 503:
		return "ServiceUnavailableError"
	}
	if status >= 500 {
		return "InternalServerError"
	}
	return "Error"
}

// admit applies readiness and fault injection, then reads the body.
func (r *Replica) admit(w http.ResponseWriter, req *http.Request) ([]byte, bool) {
	if !r.ready() {
		r.fail(w, &apiError{Status: 503, Type: statusType(503), Message: "model server is not ready"})
		return nil, false
	}
	if v := req.Header.Get(FailHeader); v != "" {
		code, err := strconv.Atoi(v)
		if err != nil || code < 400 || code > 599 {
			r.fail(w, badRequest("%s must be an HTTP error status 400-599, got %q", FailHeader, v))
			return nil, false
		}
		r.fail(w, &apiError{Status: code, Type: statusType(code), Message: "failure injected by " + FailHeader})
		return nil, false
	}
	if p := math.Float64frombits(r.failRate.Load()); p > 0 {
		r.rngMu.Lock()
		hit := r.rng.Float64() < p
		r.rngMu.Unlock()
		if hit {
			r.fail(w, &apiError{Status: 500, Type: statusType(500), Message: "failure injected by fail rate"})
			return nil, false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBodyBytes))
	if err != nil {
		r.fail(w, badRequest("reading body: %v", err))
		return nil, false
	}
	return body, true
}

// resolve maps a requested model to a LoRA adapter ("" = base model).
func (r *Replica) resolve(model string) (string, *apiError) {
	if slices.Contains(r.cfg.modelNames(), model) {
		return "", nil
	}
	if slices.Contains(r.cfg.LoRAModules, model) {
		return model, nil
	}
	return "", &apiError{Status: 404, Type: "NotFoundError", Message: fmt.Sprintf("The model `%s` does not exist.", model)}
}

func (r *Replica) submitError(err error) *apiError {
	var tl *engine.TooLongError
	switch {
	case errors.As(err, &tl):
		return badRequest("%s", err.Error())
	case errors.Is(err, engine.ErrQueueFull):
		return &apiError{Status: 429, Type: statusType(429), Message: "the waiting queue is full, retry later"}
	case errors.Is(err, engine.ErrStopped):
		return &apiError{Status: 503, Type: statusType(503), Message: "model server is shutting down"}
	}
	return &apiError{Status: 500, Type: statusType(500), Message: err.Error()}
}

// defaultOutputLen picks a deterministic output length for prompts without max_tokens.
func (r *Replica) defaultOutputLen(prompt []byte) int {
	span := uint64(r.cfg.DefaultOutputMax - r.cfg.DefaultOutputMin + 1)
	return r.cfg.DefaultOutputMin + int((xxhash.Sum64(prompt)^r.cfg.Seed)%span)
}

// wait blocks until er is done or the client goes away (then it is cancelled).
func (r *Replica) wait(ctx context.Context, er *engine.Request) (engine.Progress, bool) {
	for {
		p := er.Progress()
		if p.Done {
			return p, true
		}
		select {
		case <-er.Updates():
		case <-ctx.Done():
			r.eng.Cancel(er)
			return p, false
		}
	}
}

func (r *Replica) models(w http.ResponseWriter, _ *http.Request) {
	type model struct {
		ID          string  `json:"id"`
		Object      string  `json:"object"`
		Created     int64   `json:"created"`
		OwnedBy     string  `json:"owned_by"`
		Root        string  `json:"root"`
		Parent      *string `json:"parent"`
		MaxModelLen int     `json:"max_model_len,omitempty"`
	}
	var data []model
	names := r.cfg.modelNames()
	for _, n := range names {
		data = append(data, model{ID: n, Object: "model", Created: r.created, OwnedBy: "vllm", Root: r.cfg.Model, MaxModelLen: r.eng.Config().MaxModelLen})
	}
	for _, a := range r.cfg.LoRAModules {
		parent := names[0]
		data = append(data, model{ID: a, Object: "model", Created: r.created, OwnedBy: "vllm", Root: a, Parent: &parent})
	}
	writeJSON(w, 200, map[string]any{"object": "list", "data": data})
}
