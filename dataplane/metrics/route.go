package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxRouteSeries bounds the distinct (route, backend) label pairs of
// infergate_proxy_requests_total. Both come from configuration, not from
// clients, but a gateway with very many routes must not grow the proxy's
// memory without bound either: past it pairs count under route="other".
const MaxRouteSeries = 10000

// StatusClientGone is the code label of a request whose client went away
// before it was answered (nginx's 499).
const StatusClientGone = 499

// RouteSeries counts the requests one route sent to one backend, by the
// status the client got. Counting allocates nothing once a status has
// been seen on the pair.
type RouteSeries struct {
	vec            *prometheus.CounterVec
	route, backend string
	mu             sync.Mutex // serialises adding a status
	codes          atomic.Pointer[[]codeCounter]
}

type codeCounter struct {
	code int
	c    prometheus.Counter
}

type routeKey struct{ route, backend string }

type routeMetrics struct {
	vec    *prometheus.CounterVec
	series *bounded[routeKey, RouteSeries]
}

func newRouteMetrics() *routeMetrics {
	return &routeMetrics{
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infergate_proxy_requests_total",
			Help: "Requests by HTTPRoute (namespace/name), backend (the InferencePool or Service they were sent to) and the status the client got (499: the client went away first; stream_cut: the response broke off after it started). Per proxy: aggregate with sum."},
			[]string{"route", "backend", "code"}),
		series: newBounded[routeKey, RouteSeries](MaxRouteSeries, routeKey{Other, Other}),
	}
}

// Route returns the counters of requests route sent to backend.
func (p *Proxy) Route(route, backend string) *RouteSeries {
	rm := p.routes
	return rm.series.get(routeKey{route, backend}, func(k routeKey) *RouteSeries {
		return &RouteSeries{vec: rm.vec, route: k.route, backend: k.backend}
	})
}

// streamCut is the code of a request whose response broke off after it
// started (counted as ErrorStreamCut, whatever status was sent).
const streamCut = -1

// Count counts one request answered with status (0: none, the client went
// away); cut says its response broke off before its end.
func (s *RouteSeries) Count(status int, cut bool) {
	switch {
	case cut:
		status = streamCut
	case status == 0:
		status = StatusClientGone
	}
	if cs := s.codes.Load(); cs != nil {
		for _, c := range *cs {
			if c.code == status {
				c.c.Inc()
				return
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var next []codeCounter
	if cs := s.codes.Load(); cs != nil {
		for _, c := range *cs {
			if c.code == status { // added meanwhile
				c.c.Inc()
				return
			}
		}
		next = append(next, *cs...)
	}
	code := strconv.Itoa(status)
	if status == streamCut {
		code = ErrorStreamCut
	}
	c := s.vec.WithLabelValues(s.route, s.backend, code)
	next = append(next, codeCounter{status, c})
	s.codes.Store(&next)
	c.Inc()
}
