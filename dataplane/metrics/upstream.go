package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a request took another attempt (Proxy.Retry).
const (
	// RetryNotSent: the attempt never reached its endpoint (connect
	// refused or reset before a byte went out); always retried.
	RetryNotSent = "not_sent"
	// RetryStatus: the endpoint answered a status the route retries.
	RetryStatus = "status"
	// RetryError: the attempt failed after the request went out (the
	// route's retry policy allows it).
	RetryError = "error"
)

// ErrorStreamCut is the error_code of a request whose response had
// started (the client got its status) when the model server's stream
// broke off or went silent: the client saw an aborted response.
const ErrorStreamCut = "stream_cut"

// upstreamMetrics are the attempts and the request body budget.
type upstreamMetrics struct {
	retries *prometheus.CounterVec
	budget  atomic.Pointer[BodyBudget]
}

func newUpstreamMetrics() *upstreamMetrics {
	return &upstreamMetrics{
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "infergate_proxy", Name: "upstream_retries_total",
			Help: "Attempts after the first, by why the previous one failed: not_sent (never reached its endpoint), status (a retried status), error."},
			[]string{"reason"}),
	}
}

// collectors are the metrics to register: the budget's are read at
// scrape time from the budget SetBodyBudget set (0 before).
func (u *upstreamMetrics) collectors() []prometheus.Collector {
	read := func(f func(BodyBudget) int64) func() float64 {
		return func() float64 {
			if b := u.budget.Load(); b != nil {
				return float64(max(f(*b), 0))
			}
			return 0
		}
	}
	return []prometheus.Collector{
		u.retries,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Subsystem: "infergate_proxy", Name: "buffered_request_body_bytes",
			Help: "Bytes reserved by request bodies buffered now (their buffers' capacity)."}, read(BodyBudget.Used)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Subsystem: "infergate_proxy", Name: "buffered_request_body_limit_bytes",
			Help: "The budget for buffered request bodies (--max-buffered-body-bytes); 0 when unbounded."}, read(BodyBudget.Limit)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Subsystem: "infergate_proxy", Name: "body_budget_refusals_total",
			Help: "Requests answered 503 because their body did not fit the buffered body budget."}, read(BodyBudget.Refusals)),
	}
}

// Retry counts an attempt after the first, for the given reason (one of
// the Retry* constants).
func (p *Proxy) Retry(reason string) { p.upstream.retries.WithLabelValues(reason).Inc() }

// BodyBudget is what the request body budget reports.
type BodyBudget interface {
	Used() int64
	Limit() int64
	Refusals() int64
}

// SetBodyBudget exports b: the bytes of request bodies buffered now, the
// budget, and the requests refused for it.
func (p *Proxy) SetBodyBudget(b BodyBudget) { p.upstream.budget.Store(&b) }
