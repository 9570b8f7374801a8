package endpoints

import (
	"math"
	"time"
)

// Observed is what the proxy itself saw of an endpoint, independent of
// what the endpoint reports about itself: the signals a picker can fall
// back on when the endpoint's metrics are unusable (see MetricsProblem).
type Observed struct {
	// InFlight is the number of requests this proxy has open to it.
	InFlight int64
	// FirstByte is the smoothed time from sending a request to its first
	// response byte over recent requests (0 before the first one).
	FirstByte time.Duration
	// Failures is the number of consecutive failed requests (connect
	// errors, 5xx answers, timeouts, cut streams).
	Failures int
	// Ejected is true while failures keep it out of rotation.
	Ejected bool
}

// Observed returns the proxy's own view of the endpoint at now.
func (e *Endpoint) Observed(now time.Time) Observed {
	return Observed{
		InFlight:  e.InFlight(),
		FirstByte: time.Duration(math.Float64frombits(e.firstByte.Load())),
		Failures:  int(e.health.failures.Load()),
		Ejected:   e.Ejected(now),
	}
}

// firstByteWeight is the weight of a new observation in the smoothed
// time to first byte: about the last ten requests count.
const firstByteWeight = 0.1

// ObserveFirstByte folds the time to first byte of one request into the
// smoothed value Observed reports.
func (e *Endpoint) ObserveFirstByte(d time.Duration) {
	if d < 0 {
		return
	}
	for {
		old := e.firstByte.Load()
		prev := math.Float64frombits(old)
		next := float64(d)
		if old != 0 {
			next = prev + firstByteWeight*(next-prev)
		}
		if e.firstByte.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}
