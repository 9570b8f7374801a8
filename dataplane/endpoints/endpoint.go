// Package endpoints holds per-endpoint state shared by every route and
// config version of a proxy: the proxy's own in-flight request count and,
// for model servers, the load scraped from their /metrics. Endpoints are
// keyed by "ip:port"; a Registry creates them as configs name them and stops
// their scrapers when no config does any more.
package endpoints

import (
	"sync/atomic"
	"time"
)

// Endpoint is one upstream address. Its identity fields never change; its
// counters and metrics are updated concurrently and read without locks.
type Endpoint struct {
	// Address is "ip:port" of the serving port.
	Address string
	// MetricsAddress is "ip:port" of /metrics.
	MetricsAddress string
	Pod            string
	EngineType     string

	inFlight atomic.Int64
	metrics  atomic.Pointer[Metrics]
	lastErr  atomic.Pointer[scrapeError]
	scrapes  atomic.Uint64
	// servedHeader is the value slice of x-gateway-destination-endpoint-served,
	// built once so the response path does not allocate it.
	servedHeader []string
}

// Metrics is one scrape of a model server's load.
type Metrics struct {
	// Waiting is the number of requests queued in the server.
	Waiting float64 `json:"waiting"`
	// Running is the number of requests being decoded.
	Running float64 `json:"running"`
	// KVCacheUsage is the KV cache utilisation, 0–1.
	KVCacheUsage float64 `json:"kvCacheUsage"`
	// At is when the scrape completed.
	At time.Time `json:"at"`
}

type scrapeError struct {
	msg string
	at  time.Time
}

func newEndpoint(s Spec) *Endpoint {
	return &Endpoint{
		Address:        s.Address,
		MetricsAddress: s.MetricsAddress,
		Pod:            s.Pod,
		EngineType:     s.EngineType,
		servedHeader:   []string{s.Address},
	}
}

// New returns a standalone endpoint (no scraper), for tests and callers that
// manage state themselves.
func New(s Spec) *Endpoint { return newEndpoint(s) }

// InFlight is the number of requests this proxy has open to the endpoint.
func (e *Endpoint) InFlight() int64 { return e.inFlight.Load() }

// Acquire counts a request to the endpoint; call Release when its response
// body is finished.
func (e *Endpoint) Acquire() { e.inFlight.Add(1) }

// Release ends a request counted by Acquire.
func (e *Endpoint) Release() { e.inFlight.Add(-1) }

// Metrics returns the latest scrape, or nil before the first success.
func (e *Endpoint) Metrics() *Metrics { return e.metrics.Load() }

// SetMetrics records a scrape (the scraper calls it; tests may too).
func (e *Endpoint) SetMetrics(m *Metrics) { e.metrics.Store(m) }

// LastError returns the most recent scrape error and when it happened; ""
// when the latest scrape succeeded.
func (e *Endpoint) LastError() (string, time.Time) {
	if le := e.lastErr.Load(); le != nil {
		return le.msg, le.at
	}
	return "", time.Time{}
}

// ServedHeader is the shared, read-only value for the
// x-gateway-destination-endpoint-served response header.
func (e *Endpoint) ServedHeader() []string { return e.servedHeader }

// Fresh reports whether the endpoint has metrics no older than maxAge.
func (e *Endpoint) Fresh(now time.Time, maxAge time.Duration) (*Metrics, bool) {
	m := e.metrics.Load()
	if m == nil || now.Sub(m.At) > maxAge {
		return m, false
	}
	return m, true
}

// Status is an endpoint's state for the admin API.
type Status struct {
	Address        string   `json:"address"`
	MetricsAddress string   `json:"metricsAddress,omitempty"`
	Pod            string   `json:"pod,omitempty"`
	EngineType     string   `json:"engineType,omitempty"`
	Scraped        bool     `json:"scraped"`
	InFlight       int64    `json:"inFlight"`
	Scrapes        uint64   `json:"scrapes"`
	Metrics        *Metrics `json:"metrics,omitempty"`
	// MetricsAgeMs is how old Metrics is, in milliseconds.
	MetricsAgeMs   *float64 `json:"metricsAgeMs,omitempty"`
	LastError      string   `json:"lastError,omitempty"`
	LastErrorAgeMs *float64 `json:"lastErrorAgeMs,omitempty"`
}

func (e *Endpoint) status(now time.Time, scraped bool) Status {
	s := Status{
		Address:    e.Address,
		Pod:        e.Pod,
		EngineType: e.EngineType,
		Scraped:    scraped,
		InFlight:   e.InFlight(),
		Scrapes:    e.scrapes.Load(),
	}
	if scraped {
		s.MetricsAddress = e.MetricsAddress
	}
	if m := e.Metrics(); m != nil {
		s.Metrics = m
		age := float64(now.Sub(m.At).Microseconds()) / 1000
		s.MetricsAgeMs = &age
	}
	if msg, at := e.LastError(); msg != "" {
		s.LastError = msg
		age := float64(now.Sub(at).Microseconds()) / 1000
		s.LastErrorAgeMs = &age
	}
	return s
}
