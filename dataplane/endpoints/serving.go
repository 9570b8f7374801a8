package endpoints

import (
	"math"
	"time"
)

// What a picker learns about how an endpoint serves, beyond one scrape's
// gauges: its completion rate (how fast its waiting queue drains when it
// is saturated) and how many prompt and output tokens the proxies wrote
// into its KV cache (which, against the cache's size, says how long an
// idle prefix survives its LRU eviction).

// doneWindow is the completion rate's time constant: a saturated vLLM
// replica finishes a request every few hundred milliseconds, so a second
// would see too few to average.
const doneWindow = 4 * time.Second

// DoneRate is the endpoint's rate of finished requests per second, all
// proxies together (this proxy's own, times the proxy count: each proxy
// gets an equal share of the traffic), averaged with a time constant of
// doneWindow. 0 before the first finished request.
func (e *Endpoint) DoneRate() float64 {
	return math.Float64frombits(e.doneRate.Load()) * float64(max(e.sched.proxies.Load(), 1))
}

// noteDone folds the requests finished since the previous scrape into the
// completion rate (called by SetMetrics, one goroutine per endpoint).
func (e *Endpoint) noteDone(done int64, at time.Time) {
	prev := e.doneAt.Swap(at.UnixNano())
	if prev == 0 {
		return
	}
	dt := time.Duration(at.UnixNano() - prev)
	if dt <= 0 {
		return
	}
	a := 1 - math.Exp(-dt.Seconds()/doneWindow.Seconds())
	r := math.Float64frombits(e.doneRate.Load())
	r += a * (float64(done)/dt.Seconds() - r)
	e.doneRate.Store(math.Float64bits(r))
}

// BatchSeen is the largest running batch any scrape of the endpoint has
// shown (0 before the first): a batch smaller than it has free slots, so
// requests waiting beside it wait for the step's token budget or for KV
// room, not for a sequence to finish.
func (e *Endpoint) BatchSeen() float64 { return math.Float64frombits(e.maxRunning.Load()) }

// noteRunning raises BatchSeen to running (scrapes of one endpoint, own and
// relayed, may race: the loop keeps the larger).
func (e *Endpoint) noteRunning(running float64) {
	for {
		old := e.maxRunning.Load()
		if running <= math.Float64frombits(old) || e.maxRunning.CompareAndSwap(old, math.Float64bits(running)) {
			return
		}
	}
}

// AddWritten counts tokens a request sent to the endpoint will allocate
// in its KV cache (uncached prompt tokens and output), for all proxies.
func (e *Endpoint) AddWritten(tokens int64) { e.written.Add(tokens) }

// Written is the running total of AddWritten: the difference between two
// readings is the KV cache traffic between them.
func (e *Endpoint) Written() int64 { return e.written.Load() }

// CacheTrust is the share of the prefix cache hits the proxy expected on
// the endpoint that its responses confirmed: the mean cached_tokens its
// responses' usage reported over the mean the picker expected, over about
// the last trustWindow responses that expected a hit (each reported count
// at most the larger of the prefix the picker matched and what it
// expected), at most 1; 1 before the first. A server that caches no prefixes, or evicts much sooner than the
// picker estimates, ends up near 0: its expected hits stop steering picks
// towards it.
func (e *Endpoint) CacheTrust() float64 {
	if v := e.cacheTrust.Load(); v != 0 {
		return math.Float64frombits(v)
	}
	return 1
}

// trustWindow is how many responses CacheTrust averages over, about: a
// server restart (an empty cache) costs a handful of false hits, not the
// endpoint's affinity for minutes.
const trustWindow = 20

// NoteCached folds one response into CacheTrust: the picker expected
// expected cached prompt tokens (> 0), the response reported reported,
// of a prefix of matched tokens.
func (e *Endpoint) NoteCached(expected, reported, matched float64) {
	if !(expected > 0) || !(reported >= 0) || math.IsInf(expected, 0) || math.IsInf(reported, 0) {
		return
	}
	limit := expected
	if matched > limit { // false for a NaN
		limit = matched
	}
	reported = min(reported, limit)
	e.trustMu.Lock()
	defer e.trustMu.Unlock()
	if e.believed == 0 {
		// Trusted until shown otherwise: one miss is one miss.
		e.reported, e.believed = expected, expected
	}
	const a = 1.0 / trustWindow
	e.reported += a * (reported - e.reported)
	e.believed += a * (expected - e.believed)
	t := min(e.reported/e.believed, 1)
	e.cacheTrust.Store(math.Float64bits(max(t, math.SmallestNonzeroFloat64)))
}

// Prefill backlog: the prompt tokens the proxies sent the endpoint that it
// has not prefilled yet, as a leaky bucket: each send adds its uncached
// tokens, and the bucket drains at the prefill rate the picker estimates.
// Between scrapes it is the only sign that a server just took a long
// prompt (its running count says 1 either way), and a request sent there
// would prefill after it.

// Backlog is the prefill backlog at now (unix ns) for a server that
// prefills rate tokens per second.
func (e *Endpoint) Backlog(now int64, rate float64) float64 {
	b := math.Float64frombits(e.backlog.Load())
	at := e.backlogAt.Load()
	if b <= 0 || now <= at {
		return max(b, 0)
	}
	return max(b-float64(now-at)/1e9*rate, 0)
}

// SendPrefill is the mean uncached prompt tokens of the latest sends to
// the endpoint (AddSend: this proxy's and the others' the fleet
// exchange brought), over about the last prefillMean: what a request
// queued there is likely to prefill. 0 before the first send.
func (e *Endpoint) SendPrefill() float64 { return math.Float64frombits(e.sendPrefill.Load()) }

// prefillMean is how many sends SendPrefill averages over.
const prefillMean = 16

// AddSend counts a send made at (unix ns) of prefill uncached prompt
// tokens into SendPrefill, and into the prefill backlog at now less what
// the endpoint has prefilled since at (another proxy's send arrives
// through the fleet exchange tens of milliseconds after it was made). It
// returns the backlog after the send.
func (e *Endpoint) AddSend(prefill float64, at, now int64, rate float64) float64 {
	e.backlogMu.Lock()
	defer e.backlogMu.Unlock()
	e.prefillSends = min(e.prefillSends+1, prefillMean)
	mean := math.Float64frombits(e.sendPrefill.Load())
	e.sendPrefill.Store(math.Float64bits(mean + (prefill-mean)/float64(e.prefillSends)))
	left := prefill - float64(max(now-at, 0))/1e9*rate
	if !(left > 0) {
		return e.Backlog(now, rate)
	}
	b := e.Backlog(now, rate) + left
	e.backlog.Store(math.Float64bits(b))
	e.backlogAt.Store(max(now, e.backlogAt.Load()))
	return b
}

// Prefilled takes off the backlog, at now, tokens of it the endpoint had
// prefilled at at (unix ns) — less what the backlog has drained of them
// since — and returns what it took off. A request's first token says the
// endpoint prefilled its prompt: when the endpoint prefills faster than
// rate, the backlog still holds some of it, which would price the
// endpoint as busy with work it has finished (on the wall-clock
// benchmark, whose replicas run 4× faster than the default profile, homes
// were priced 0.9–2.7 s of finished prefill and their prompts sent
// elsewhere cold). An endpoint slower than rate is not corrected: its
// backlog drains early and its scrapes show the requests still waiting.
func (e *Endpoint) Prefilled(tokens float64, at, now int64, rate float64) float64 {
	left := tokens - float64(max(now-at, 0))/1e9*rate
	if !(left > 0) || math.IsInf(left, 0) {
		return 0
	}
	e.backlogMu.Lock()
	defer e.backlogMu.Unlock()
	b := e.Backlog(now, rate)
	if b <= 0 {
		return 0
	}
	left = min(left, b)
	e.backlog.Store(math.Float64bits(b - left))
	e.backlogAt.Store(max(now, e.backlogAt.Load()))
	return left
}
