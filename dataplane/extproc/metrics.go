package extproc

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of asking a picker about one request (label outcome).
const (
	OutcomePicked    = "picked"             // the request went to the picker's endpoints
	OutcomeImmediate = "immediate_response" // the picker answered the request itself
	OutcomeFailOpen  = "failed_open"        // the picker failed; the proxy picked locally
	OutcomeFailClose = "failed_closed"      // the picker failed; the client got 503
	OutcomeCanceled  = "canceled"           // the client went away first
)

// Reasons a picker failed (label reason).
const (
	ReasonInvalidReference = "invalid_reference"       // the pool's reference does not resolve
	ReasonNoEndpoints      = "no_endpoints"            // the picker Service has no ready endpoint
	ReasonUnavailable      = "unavailable"             // no connection to the picker
	ReasonTimeout          = "timeout"                 // no answer in time
	ReasonStreamError      = "stream_error"            // the picker ended the stream with an error
	ReasonProtocolError    = "protocol_error"          // an answer the protocol does not allow
	ReasonNoDestination    = "no_destination"          // the answer named no endpoint
	ReasonNotInPool        = "destination_not_in_pool" // every endpoint named is unknown or malformed
)

// metrics are the picker metrics of one proxy.
type metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	refused  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "infergate", Subsystem: "endpoint_picker", Name: "requests_total",
			Help: "Requests an external endpoint picker was asked about, by picker Service and outcome."}, []string{"picker", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "infergate", Subsystem: "endpoint_picker", Name: "errors_total",
			Help: "Failures of external endpoint pickers, by picker Service, phase (request, response) and reason."}, []string{"picker", "phase", "reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "infergate", Subsystem: "endpoint_picker", Name: "refused_destinations_total",
			Help: "Endpoints a picker named that are not endpoints of the pool (or not ip:port), which the proxy refused."}, []string{"picker"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "infergate", Subsystem: "endpoint_picker", Name: "request_duration_seconds",
			Help:    "Time from opening a request's stream to the picker's complete answer, in seconds.",
			Buckets: []float64{0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10}}, []string{"picker"}),
	}
	if reg != nil {
		// A registry shared by two clients keeps the first one's series.
		m.requests = register(reg, m.requests)
		m.errors = register(reg, m.errors)
		m.refused = register(reg, m.refused)
		m.duration = register(reg, m.duration)
	}
	return m
}

// register adds c to reg, or returns the collector already registered
// under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a name clash with another kind of metric: a bug
	}
	return c
}

// pickerMetrics are one picker's series, resolved once per config.
type pickerMetrics struct {
	m        *metrics
	name     string
	duration prometheus.Observer
	refused  prometheus.Counter
	picked   prometheus.Counter
}

func (m *metrics) forPicker(name string) *pickerMetrics {
	return &pickerMetrics{m: m, name: name, duration: m.duration.WithLabelValues(name),
		refused: m.refused.WithLabelValues(name), picked: m.requests.WithLabelValues(name, OutcomePicked)}
}

func (pm *pickerMetrics) outcome(o string) {
	if o == OutcomePicked {
		pm.picked.Inc()
		return
	}
	pm.m.requests.WithLabelValues(pm.name, o).Inc()
}

func (pm *pickerMetrics) failed(phase, reason string) {
	pm.m.errors.WithLabelValues(pm.name, phase, reason).Inc()
}
