// Package endpoints holds per-endpoint state shared by every route and
// config version of a proxy: the proxy's own in-flight request count and,
// for model servers, the load scraped from their /metrics. Endpoints are
// keyed by "ip:port"; a Registry creates them as configs name them and stops
// their scrapers when no config does any more.
package endpoints

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
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
	// Hash is a stable hash of Address, so every proxy ranks endpoints the
	// same way in rendezvous hashing.
	Hash uint64

	inFlight atomic.Int64
	// firstByte (float64 nanoseconds) is the smoothed time to first byte
	// (see Observed).
	firstByte atomic.Uint64
	// sent counts every request this proxy sent (Acquire), for the
	// per-endpoint request counter of /metrics.
	sent atomic.Uint64
	// lastScore (float64 bits) and lastScoredAt (unix ns) are the total
	// score the picker gave this endpoint in its latest decision, for the
	// admin API; written without allocation on the hot path.
	lastScore    atomic.Uint64
	lastScoredAt atomic.Int64
	// sinceScrape counts requests this proxy started since the scrape it
	// holds was taken (its own or one the fleet exchange relayed): the
	// part of the load the scraped queue cannot show yet. rateSends counts
	// them since this proxy's own latest scrape, for SendRate.
	sinceScrape, rateSends atomic.Int64
	// sendRate (float64 bits) is SendRate; rateAt (unix ns) is when the
	// scrape that last updated it was taken.
	sendRate atomic.Uint64
	rateAt   atomic.Int64
	// sched is the registry's scrape schedule: the proxy count turns this
	// proxy's send rate into the other proxies' unseen requests, and the
	// interval sets how old metrics may be for decisions.
	sched   *schedule
	health  health
	metrics atomic.Pointer[Metrics]
	lastErr atomic.Pointer[scrapeError]
	scrapes atomic.Uint64
	// doneRate (float64 bits, this proxy's own) and doneAt (unix ns of the
	// scrape that last updated it) are DoneRate; released counts requests
	// finished since that scrape; written is Written.
	doneRate atomic.Uint64
	doneAt   atomic.Int64
	released atomic.Int64
	written  atomic.Int64
	// maxRunning (float64 bits) is BatchSeen.
	maxRunning atomic.Uint64
	// cacheTrust (float64 bits, 0: none yet) is CacheTrust, computed
	// under trustMu from the averages of reported and believed cached
	// tokens.
	cacheTrust         atomic.Uint64
	trustMu            sync.Mutex
	reported, believed float64
	// backlog (float64 bits, tokens) as of backlogAt (unix ns): Backlog.
	backlog   atomic.Uint64
	backlogAt atomic.Int64
	backlogMu sync.Mutex
	// sendPrefill (float64 bits) is SendPrefill, written under backlogMu;
	// prefillSends counts the sends in it, up to prefillMean.
	sendPrefill  atomic.Uint64
	prefillSends int
	// othersSince counts the other proxies' sends made after the scrape
	// held was taken, as the fleet exchange brought them; othersAt is when
	// it last brought one (unix ns).
	othersSince, othersAt atomic.Int64
	// ownTimes and othersTimes are when this proxy's and the others'
	// latest sends were made (Acquire, NoteOthersSend): a scrape relayed
	// from another proxy (Adopt) was taken tens of milliseconds ago, and
	// the sends since then are counted again from these.
	ownTimes, othersTimes sendTimes
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
	// LoRA state from vllm:lora_requests_info (newest series): adapters
	// with running and waiting requests, and the adapter slots (max_lora).
	// MaxLoRA 0 means the server reports no LoRA state.
	RunningAdapters []string `json:"runningAdapters,omitempty"`
	WaitingAdapters []string `json:"waitingAdapters,omitempty"`
	MaxLoRA         int      `json:"maxLora,omitempty"`
	// KVCapacity is the KV cache size in tokens (blocks × tokens per
	// block, from the engine's cache config metrics); 0 when not reported.
	KVCapacity float64 `json:"kvCapacityTokens,omitempty"`
	// adapters is a 64-bit filter of RunningAdapters and WaitingAdapters,
	// set by SetMetrics: a picker asking every endpoint whether it reports
	// a model rules most out without comparing names.
	adapters uint64
	// At is when the scrape completed.
	At time.Time `json:"at"`
	// Relayed marks a scrape another proxy of the gateway took, brought by
	// the fleet exchange (Adopt); this proxy's own scrapes are the ones it
	// reports.
	Relayed bool `json:"relayed,omitempty"`
}

// scrapeError is why the latest scrape gave no usable sample.
type scrapeError struct {
	msg string
	at  time.Time
	// since is when the scrapes started failing (the first of the run).
	since time.Time
	// invalid marks a sample with out-of-domain values: unlike a scrape
	// that failed (the last good sample ages out as usual), it makes the
	// endpoint's metrics unusable at once — a server that reports
	// nonsense may have reported nonsense before.
	invalid bool
}

func newEndpoint(s Spec, sched *schedule) *Endpoint {
	return &Endpoint{
		Address:        s.Address,
		MetricsAddress: s.MetricsAddress,
		Pod:            s.Pod,
		EngineType:     s.EngineType,
		Hash:           xxhash.Sum64String(s.Address),
		servedHeader:   []string{s.Address},
		sched:          sched,
	}
}

// DefaultStaleAfter is how old scraped metrics may be and still count for
// decisions at the default 50 ms interval (the reference picker's 200 ms).
const DefaultStaleAfter = 200 * time.Millisecond

// New returns a standalone endpoint (no scraper), for tests and callers that
// manage state themselves.
func New(s Spec) *Endpoint { return newEndpoint(s, newSchedule(defaultInterval, 1)) }

// InFlight is the number of requests this proxy has open to the endpoint.
func (e *Endpoint) InFlight() int64 { return e.inFlight.Load() }

// Acquire counts a request sent to the endpoint at now; call Release when
// its response body is finished. The send time is remembered so that a
// scrape another proxy took (Adopt) counts the requests sent after it.
func (e *Endpoint) Acquire(now time.Time) {
	e.inFlight.Add(1)
	e.sinceScrape.Add(1)
	e.rateSends.Add(1)
	e.sent.Add(1)
	e.ownTimes.add(now.UnixNano())
}

// SinceScrape is the number of requests this proxy sent to the endpoint
// since the metrics it holds were taken and that are still in flight: pickers
// add it to the scraped queue so a burst between two scrapes does not all
// land on one endpoint. Requests that already finished are not load any
// more; min(started since the scrape, in flight now) bounds the ones still
// open without tracking each request's scrape epoch.
func (e *Endpoint) SinceScrape() int64 {
	return min(e.sinceScrape.Load(), e.inFlight.Load())
}

// Unseen estimates the requests every proxy together sent to the endpoint
// since its latest scrape (taken at m.At) and that are still open, at now:
// this proxy's own (SinceScrape, exact) plus the other proxies' — those
// the fleet exchange brought (NoteOthersSend) when it is live, else
// Proxies − 1 times this proxy's recent send rate to the endpoint
// (SendRate) times the scrape's age. A load balancer in front of N proxies gives each 1/N
// of the traffic, and the proxies agree on where a prompt goes, so each
// other proxy sends about what this one does. The rate rather than this
// proxy's own count since the scrape scales the estimate: a single own
// request would otherwise count N times, and with 4 proxies make a
// replica look 4 requests busier than its peers until the next scrape —
// enough for the queue scorer to move a prefix off its home (a cold
// prefill) although the other proxies sent nothing there.
func (e *Endpoint) Unseen(m *Metrics, now time.Time) float64 {
	own := float64(e.SinceScrape())
	others := e.sched.proxies.Load() - 1
	if others <= 0 || m == nil {
		return own
	}
	if e.OthersLive(now) {
		// The fleet exchange brings the others' sends themselves (5–10 ms
		// late): count those made after the scrape instead of estimating.
		return own + float64(e.othersSince.Load())
	}
	age := now.Sub(m.At).Seconds()
	if age <= 0 {
		return own
	}
	return own + float64(others)*e.SendRate()*age
}

// OthersLive reports whether the fleet exchange brought another proxy's
// send recently (within the stale-metrics bound) at now.
func (e *Endpoint) OthersLive(now time.Time) bool {
	at := e.othersAt.Load()
	return at != 0 && now.UnixNano()-at < int64(e.sched.staleAfter())
}

// NoteOthersSend counts another proxy's send to the endpoint, made at at
// and brought by the fleet exchange at now (unix ns): while such sends
// keep arriving, Unseen counts the others' sends after the latest scrape
// instead of estimating them from this proxy's own send rate. (routesim,
// 4 proxies, 5 seeds: TTFT p90 on KV pressure 1.63 → 1.50 s, on unequal
// replicas 0.28 → 0.25 s, multi-turn 0.26 → 0.24 s.)
func (e *Endpoint) NoteOthersSend(at, now int64) {
	e.othersTimes.add(at)
	if m := e.metrics.Load(); m == nil || at > m.At.UnixNano() {
		e.othersSince.Add(1)
	}
	e.othersAt.Store(now)
}

// SendRate is this proxy's recent rate of requests to the endpoint (per
// second), averaged over scrapes with a time constant of rateWindow.
func (e *Endpoint) SendRate() float64 { return math.Float64frombits(e.sendRate.Load()) }

// rateWindow is SendRate's time constant: long enough to smooth the
// fraction of a request a 50 ms scrape interval sees, short enough to
// follow a prefix moving to the endpoint within a second.
const rateWindow = time.Second

// noteSends folds the requests sent since the previous scrape into
// SendRate (the scraper calls it via SetMetrics, one goroutine per
// endpoint).
func (e *Endpoint) noteSends(sent int64, at time.Time) {
	prev := e.rateAt.Swap(at.UnixNano())
	if prev == 0 {
		return
	}
	dt := time.Duration(at.UnixNano() - prev)
	if dt <= 0 {
		return
	}
	a := 1 - math.Exp(-dt.Seconds()/rateWindow.Seconds())
	r := e.SendRate()
	r += a * (float64(sent)/dt.Seconds() - r)
	e.sendRate.Store(math.Float64bits(r))
}

// Proxies is the number of proxies that share the endpoint's traffic (the
// registry's proxy count).
func (e *Endpoint) Proxies() int { return int(e.sched.proxies.Load()) }

// StaleAfter is how old the endpoint's metrics may be for decisions.
func (e *Endpoint) StaleAfter() time.Duration { return e.sched.staleAfter() }

// Release ends a request counted by Acquire.
func (e *Endpoint) Release() {
	e.inFlight.Add(-1)
	e.released.Add(1)
}

// Metrics returns the latest scrape, or nil before the first success.
func (e *Endpoint) Metrics() *Metrics { return e.metrics.Load() }

// SetMetrics records a scrape (the scraper calls it; tests may too). It
// takes m over: it fills m's adapter filter, and readers share m.
func (e *Endpoint) SetMetrics(m *Metrics) {
	e.take(m)
	e.metrics.Store(m)
	e.othersSince.Store(0)
	e.sinceScrape.Store(0)
	e.noteDone(e.released.Swap(0), m.At)
	e.noteSends(e.rateSends.Swap(0), m.At)
}

// take readies a scrape, own (SetMetrics) or relayed (Adopt), to be held:
// its adapter filter, and the batch it shows noted in BatchSeen.
func (e *Endpoint) take(m *Metrics) {
	m.fillAdapters()
	e.noteRunning(m.Running)
}

// fillAdapters sets m's adapter filter from its running and waiting
// adapters.
func (m *Metrics) fillAdapters() {
	m.adapters = 0
	for _, a := range m.RunningAdapters {
		m.adapters |= AdapterBit(a)
	}
	for _, a := range m.WaitingAdapters {
		m.adapters |= AdapterBit(a)
	}
}

// AdapterBit is adapter name a's bit in the filter MayReportAdapter reads.
func AdapterBit(a string) uint64 { return 1 << (xxhash.Sum64String(a) & 63) }

// MayReportAdapter reports whether the adapter whose AdapterBit is bit may
// be in RunningAdapters or WaitingAdapters; false is certain.
func (m *Metrics) MayReportAdapter(bit uint64) bool { return m.adapters&bit != 0 }

// LastError returns the most recent scrape error and when it happened; ""
// when the latest scrape succeeded.
func (e *Endpoint) LastError() (string, time.Time) {
	if le := e.lastErr.Load(); le != nil {
		return le.msg, le.at
	}
	return "", time.Time{}
}

// MetricsProblem says why the endpoint's scraped metrics are not usable
// for decisions, for pickers that keep such an endpoint in rotation on
// the proxy's own signals (see Observed): "" when the latest scrape gave a
// valid sample, else the reason (unreachable, timed out, too large, not
// an exposition, or an out-of-domain value) and since when scrapes have
// been failing. Freshness is Fresh's to say: a failed scrape leaves the
// previous sample to age out, an invalid one makes it stale at once.
func (e *Endpoint) MetricsProblem() (reason string, since time.Time) {
	if le := e.lastErr.Load(); le != nil {
		return le.msg, le.since
	}
	return "", time.Time{}
}

// scrapeFailed records a scrape that gave no usable sample at now.
func (e *Endpoint) scrapeFailed(err error, now time.Time) {
	se := &scrapeError{msg: err.Error(), at: now, since: now}
	if prev := e.lastErr.Load(); prev != nil {
		se.since = prev.since
	}
	var inv *InvalidError
	se.invalid = errors.As(err, &inv)
	e.lastErr.Store(se)
}

// ServedHeader is the shared, read-only value for the
// x-gateway-destination-endpoint-served response header.
func (e *Endpoint) ServedHeader() []string { return e.servedHeader }

// Fresh reports whether the endpoint has metrics no older than maxAge
// and its latest scrape did not report out-of-domain values.
func (e *Endpoint) Fresh(now time.Time, maxAge time.Duration) (*Metrics, bool) {
	m := e.metrics.Load()
	if m == nil || now.Sub(m.At) > maxAge {
		return m, false
	}
	if le := e.lastErr.Load(); le != nil && le.invalid {
		return m, false
	}
	return m, true
}

// RecordScore notes the total score a pick gave the endpoint at now.
func (e *Endpoint) RecordScore(v float64, now time.Time) {
	e.lastScore.Store(math.Float64bits(v))
	e.lastScoredAt.Store(now.UnixNano())
}

// Status is an endpoint's state for the admin API.
type Status struct {
	Address        string `json:"address"`
	MetricsAddress string `json:"metricsAddress,omitempty"`
	Pod            string `json:"pod,omitempty"`
	EngineType     string `json:"engineType,omitempty"`
	Scraped        bool   `json:"scraped"`
	InFlight       int64  `json:"inFlight"`
	// Sent counts the requests this proxy sent to the endpoint.
	Sent    uint64   `json:"sent"`
	Scrapes uint64   `json:"scrapes"`
	Metrics *Metrics `json:"metrics,omitempty"`
	// MetricsAgeMs is how old Metrics is, in milliseconds.
	MetricsAgeMs   *float64 `json:"metricsAgeMs,omitempty"`
	LastError      string   `json:"lastError,omitempty"`
	LastErrorAgeMs *float64 `json:"lastErrorAgeMs,omitempty"`
	// MetricsFailingForMs is how long scrapes have given no usable
	// sample (absent while they do).
	MetricsFailingForMs *float64 `json:"metricsFailingForMs,omitempty"`
	// MetricsInvalid is true when the latest scrape reported values
	// outside their domain (LastError says which): the metrics count as
	// stale.
	MetricsInvalid bool `json:"metricsInvalid,omitempty"`
	// FirstByteMs is the proxy's smoothed time to first byte from the
	// endpoint (absent before its first response).
	FirstByteMs *float64 `json:"firstByteMs,omitempty"`
	// EjectedForMs is how much longer the endpoint is ejected after
	// failures (absent when it is not).
	EjectedForMs *float64 `json:"ejectedForMs,omitempty"`
	// Failures is the number of consecutive failed requests (connect
	// errors, 5xx, timeouts, cut streams) the proxy sent it.
	Failures int `json:"failures,omitempty"`
	// LastScore is what the picker gave the endpoint in its latest
	// decision over it — the weighted total of the scorers (higher is
	// better) or the cost model's estimated cost in seconds (lower is
	// better) — LastScoreAgeMs how long ago.
	LastScore      *float64 `json:"lastScore,omitempty"`
	LastScoreAgeMs *float64 `json:"lastScoreAgeMs,omitempty"`
}

func (e *Endpoint) status(now time.Time, scraped bool) Status {
	s := Status{
		Address:    e.Address,
		Pod:        e.Pod,
		EngineType: e.EngineType,
		Scraped:    scraped,
		InFlight:   e.InFlight(),
		Sent:       e.sent.Load(),
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
	if at := e.lastScoredAt.Load(); at != 0 {
		v := math.Float64frombits(e.lastScore.Load())
		age := float64(now.Sub(time.Unix(0, at)).Microseconds()) / 1000
		s.LastScore, s.LastScoreAgeMs = &v, &age
	}
	if le := e.lastErr.Load(); le != nil {
		s.LastError = le.msg
		age := float64(now.Sub(le.at).Microseconds()) / 1000
		failing := float64(now.Sub(le.since).Microseconds()) / 1000
		s.LastErrorAgeMs, s.MetricsFailingForMs, s.MetricsInvalid = &age, &failing, le.invalid
	}
	if fb := e.Observed(now).FirstByte; fb > 0 {
		ms := float64(fb.Microseconds()) / 1000
		s.FirstByteMs = &ms
	}
	s.Failures = int(e.health.failures.Load())
	if until := e.ejectedUntil(); until > now.UnixNano() {
		left := float64(until-now.UnixNano()) / 1e6
		s.EjectedForMs = &left
	}
	return s
}
