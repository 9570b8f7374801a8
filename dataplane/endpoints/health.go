package endpoints

import (
	"sync/atomic"
	"time"
)

// Ejection backoff: the first failure after a success ejects for
// ejectBase, each further consecutive failure doubles it up to ejectMax.
const (
	ejectBase = 250 * time.Millisecond
	ejectMax  = 10 * time.Second
	// ejectAfter consecutive failures eject; one failed request among many
	// good ones (a client aborting, a single 500) should not.
	ejectAfter = 3
)

// health is an endpoint's passive health: consecutive failures of requests
// the proxy sent, and until when the endpoint is ejected.
type health struct {
	failures atomic.Int32
	until    atomic.Int64 // unix nanos; 0 when never ejected
	// down (unix nanos) ejects until then an endpoint whose /metrics port
	// refused the connection: nothing listens there, the server is gone.
	down atomic.Int64
}

// ReportResult records the outcome of one request to the endpoint: ok is
// false for connect errors and 5xx answers. After ejectAfter consecutive
// failures the endpoint is ejected with exponential backoff; a success
// clears the count (an ejected endpoint gets traffic again only when no
// healthy one is left, or after the backoff).
func (e *Endpoint) ReportResult(ok bool, now time.Time) {
	if ok {
		e.health.failures.Store(0)
		return
	}
	n := e.health.failures.Add(1)
	if n < ejectAfter {
		return
	}
	d := ejectBase << min(n-ejectAfter, 6)
	d = min(d, ejectMax)
	e.health.until.Store(now.Add(d).UnixNano())
}

// Ejected reports whether failures took the endpoint out of rotation at
// now: its requests' (ReportResult), or a scrape refused by its server.
func (e *Endpoint) Ejected(now time.Time) bool {
	return now.UnixNano() < e.ejectedUntil()
}

func (e *Endpoint) ejectedUntil() int64 {
	return max(e.health.until.Load(), e.health.down.Load())
}

// markDown ejects the endpoint until until (a scrape found nothing
// listening: a killed or restarting server), or lifts that when until is
// zero (a scrape succeeded). The scraper marks it for as long as its next
// scrape may take to tell, so an endpoint that is gone is out of rotation
// within one scrape interval, without waiting for requests to fail.
func (e *Endpoint) markDown(until time.Time) {
	if until.IsZero() {
		e.health.down.Store(0)
		return
	}
	e.health.down.Store(until.UnixNano())
}
