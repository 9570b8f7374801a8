// Package metrics holds the proxy's Prometheus metrics. Request metrics use
// the Inference Extension's names and labels (inference_objective_*,
// inference_pool_*, inference_extension_scheduler_e2e_duration_seconds), so
// its dashboards work unchanged; TTFT and time per output token, which the
// extension's picker cannot see, are infergate_proxy_*.
//
// Everything hangs off a Proxy value with its own registry (no global
// state). Per-request recording looks up a cached series set once per
// (model, target) pair, so the hot path does no label hashing and no
// allocation after the first request of a pair.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MaxModelSeries bounds the distinct (model, target) label pairs. Model
// names come from clients; past the bound they are counted under
// model_name="other" so a client cannot grow the proxy's memory.
const MaxModelSeries = 1000

// Other is the model label for pairs beyond MaxModelSeries.
const Other = "other"

// Proxy is the set of proxy metrics with its registry.
type Proxy struct {
	reg *prometheus.Registry

	requests  *prometheus.CounterVec
	errors    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reqSize   *prometheus.HistogramVec
	respSize  *prometheus.HistogramVec
	inTokens  *prometheus.HistogramVec
	outTokens *prometheus.HistogramVec
	running   *prometheus.GaugeVec
	ntpot     *prometheus.HistogramVec
	ttft      *prometheus.HistogramVec
	tpot      *prometheus.HistogramVec
	// cachedIn and reportedIn: the prefix-cache hits the model servers
	// report, over the prompt tokens of the responses that report them.
	cachedIn, reportedIn *prometheus.CounterVec
	schedule             prometheus.Histogram
	poolsDesc            poolDescs
	poolsMu              sync.Mutex
	poolSource           func() []PoolStat
	queue                *queueMetrics
	upstream             *upstreamMetrics
	routes               *routeMetrics
	endpoints            *endpointCollector

	series *bounded[pair, Series]
}

type pair struct{ model, target string }

// Series are the request metrics of one (model, target) pair.
type Series struct {
	p                                      *Proxy
	model, target                          string
	requests                               prometheus.Counter
	duration, reqSize, respSize            prometheus.Observer
	inTokens, outTokens, ntpot, ttft, tpot prometheus.Observer
	running                                prometheus.Gauge
	cachedIn, reportedIn                   prometheus.Counter
}

var (
	latencyBuckets = []float64{0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3,
		4, 5, 6, 8, 10, 15, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600}
	sizeBuckets = []float64{64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
		131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608, 16777216}
	respSizeBuckets = []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536}
	inTokenBuckets  = []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576}
	outTokenBuckets = []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}
	perTokenBuckets = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0}
	ttftBuckets     = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	pickBuckets     = []float64{0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1}
)

// New returns the proxy metrics, registered with a fresh registry that
// also carries the Go runtime and process collectors.
func New() *Proxy {
	labels := []string{"model_name", "target_model_name"}
	hist := func(sub, name, help string, b []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: sub, Name: name, Help: help, Buckets: b}, labels)
	}
	p := &Proxy{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "inference_objective", Name: "request_total",
			Help: "Requests per model and target model."}, labels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "inference_objective", Name: "request_error_total",
			Help: "Failed requests per model, target model and error code."}, append(labels, "error_code")),
		duration:  hist("inference_objective", "request_duration_seconds", "Response latency (until the last byte) in seconds.", latencyBuckets),
		reqSize:   hist("inference_objective", "request_sizes", "Request body size in bytes.", sizeBuckets),
		respSize:  hist("inference_objective", "response_sizes", "Response body size in bytes.", respSizeBuckets),
		inTokens:  hist("inference_objective", "input_tokens", "Input (prompt) tokens per request, from the response usage.", inTokenBuckets),
		outTokens: hist("inference_objective", "output_tokens", "Output (completion) tokens per request, from the response usage.", outTokenBuckets),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: "inference_objective", Name: "running_requests",
			Help: "Requests in flight per model."}, []string{"model_name"}),
		ntpot: hist("inference_objective", "normalized_time_per_output_token_seconds", "Request latency divided by output tokens, in seconds.", perTokenBuckets),
		ttft:  hist("infergate_proxy", "time_to_first_token_seconds", "Time from the request to the first response body byte (first token of a stream), in seconds.", ttftBuckets),
		tpot:  hist("infergate_proxy", "time_per_output_token_seconds", "Time after the first byte per further output token of streamed responses, in seconds.", perTokenBuckets),
		cachedIn: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "infergate_proxy", Name: "cached_input_tokens_total",
			Help: "Prompt tokens the model servers reported serving from their prefix cache (usage prompt_tokens_details.cached_tokens)."}, labels),
		reportedIn: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "infergate_proxy", Name: "cache_reported_input_tokens_total",
			Help: "Prompt tokens of the responses that reported cached tokens: the prefix-cache hit ratio is cached_input_tokens_total over this."}, labels),
		schedule: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "inference_extension", Name: "scheduler_e2e_duration_seconds",
			Help: "Time the picker took to choose an endpoint, in seconds.", Buckets: pickBuckets}),
		series:    newBounded[pair, Series](MaxModelSeries, pair{Other, Other}),
		queue:     newQueueMetrics(),
		upstream:  newUpstreamMetrics(),
		routes:    newRouteMetrics(),
		endpoints: newEndpointCollector(),
	}
	p.poolsDesc = newPoolDescs()
	p.reg.MustRegister(p.requests, p.errors, p.duration, p.reqSize, p.respSize, p.inTokens, p.outTokens,
		p.running, p.ntpot, p.ttft, p.tpot, p.cachedIn, p.reportedIn, p.schedule, poolCollector{p}, p.queue, p.routes.vec, p.endpoints,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p.reg.MustRegister(p.upstream.collectors()...)
	return p
}

// Registry is the registry holding the proxy metrics.
func (p *Proxy) Registry() *prometheus.Registry { return p.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (p *Proxy) Handler() http.Handler {
	return promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{})
}

// SetPools sets the function read at each scrape for the pool gauges.
func (p *Proxy) SetPools(f func() []PoolStat) {
	p.poolsMu.Lock()
	p.poolSource = f
	p.poolsMu.Unlock()
}

// ObservePick records how long one pick took.
func (p *Proxy) ObservePick(d time.Duration) { p.schedule.Observe(d.Seconds()) }

// Error counts a failed request; code is the HTTP status (or a short
// reason), as error_code.
func (p *Proxy) Error(model, target string, status int) {
	s := p.Series(model, target)
	p.errors.WithLabelValues(s.model, s.target, strconv.Itoa(status)).Inc()
}

// Series returns the metrics of a (model, target) pair.
func (p *Proxy) Series(model, target string) *Series {
	return p.series.get(pair{model, target}, p.newSeries)
}

func (p *Proxy) newSeries(k pair) *Series {
	return &Series{
		p: p, model: k.model, target: k.target,
		requests:   p.requests.WithLabelValues(k.model, k.target),
		duration:   p.duration.WithLabelValues(k.model, k.target),
		reqSize:    p.reqSize.WithLabelValues(k.model, k.target),
		respSize:   p.respSize.WithLabelValues(k.model, k.target),
		inTokens:   p.inTokens.WithLabelValues(k.model, k.target),
		outTokens:  p.outTokens.WithLabelValues(k.model, k.target),
		ntpot:      p.ntpot.WithLabelValues(k.model, k.target),
		ttft:       p.ttft.WithLabelValues(k.model, k.target),
		tpot:       p.tpot.WithLabelValues(k.model, k.target),
		running:    p.running.WithLabelValues(k.model),
		cachedIn:   p.cachedIn.WithLabelValues(k.model, k.target),
		reportedIn: p.reportedIn.WithLabelValues(k.model, k.target),
	}
}

// Start counts a request as started and running.
func (s *Series) Start(requestBytes int) {
	s.requests.Inc()
	s.running.Inc()
	s.reqSize.Observe(float64(requestBytes))
}

// Result is what the proxy learned about a finished request.
type Result struct {
	Start, FirstByte, End time.Time
	// Status is the HTTP status sent to the client (0 if none was).
	Status        int
	ResponseBytes int64
	// Usage from the response, when it had one; Cached the prompt tokens
	// it said came from the prefix cache, when it said (HasCached).
	HasUsage      bool
	Input, Output int64
	HasCached     bool
	Cached        int64
	// Streamed is true for SSE responses.
	Streamed bool
	// Cut is true when the response started but the model server's
	// stream broke off (or went silent past the idle timeout): an error
	// (ErrorStreamCut) whatever the status sent.
	Cut bool
}

// Done records a request started with Start.
func (s *Series) Done(r Result) { s.DoneAs(s, r) }

// DoneAs records a request started with Start on s whose answer came from
// final's target (a retry went to a backend with another target model):
// the running gauge goes down where it went up, the outcome counts under
// final.
func (s *Series) DoneAs(final *Series, r Result) {
	s.running.Dec()
	final.record(r)
}

func (s *Series) record(r Result) {
	if r.Cut {
		s.p.errors.WithLabelValues(s.model, s.target, ErrorStreamCut).Inc()
		return
	}
	if r.Status == 0 || r.Status >= 400 {
		s.p.errors.WithLabelValues(s.model, s.target, strconv.Itoa(r.Status)).Inc()
		return
	}
	total := r.End.Sub(r.Start).Seconds()
	s.duration.Observe(total)
	s.respSize.Observe(float64(r.ResponseBytes))
	if !r.FirstByte.IsZero() {
		s.ttft.Observe(r.FirstByte.Sub(r.Start).Seconds())
	}
	if !r.HasUsage {
		return
	}
	if r.Input > 0 {
		s.inTokens.Observe(float64(r.Input))
		if r.HasCached {
			s.reportedIn.Add(float64(r.Input))
			s.cachedIn.Add(float64(min(max(r.Cached, 0), r.Input)))
		}
	}
	if r.Output > 0 {
		s.outTokens.Observe(float64(r.Output))
		s.ntpot.Observe(total / float64(r.Output))
		if r.Streamed && r.Output > 1 && !r.FirstByte.IsZero() {
			s.tpot.Observe(r.End.Sub(r.FirstByte).Seconds() / float64(r.Output-1))
		}
	}
}
