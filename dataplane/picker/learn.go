package picker

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// Outcome is what a finished, successful attempt tells the picker that
// chose it (the proxy's pipeline reports it when the response is done).
type Outcome struct {
	// FirstByte is the time from sending to the response's first byte (0:
	// unknown); for a streamed response that is the first token. Total
	// is the time to the response's end.
	FirstByte, Total time.Duration
	// Streamed reports an SSE response (a non-streamed one's first byte
	// comes with its last token).
	Streamed bool
	// Usage from the response: prompt, cached (from the model server's
	// prefix cache) and output tokens.
	UsageKnown     bool
	Prompt, Output int64
	CachedKnown    bool
	Cached         int64
}

// Observer is implemented by pickers that learn from outcomes.
type Observer interface {
	Observe(req *Request, ep *endpoints.Endpoint, o Outcome)
}

// Observe implements Observer: a cost-model scheduler learns the pool's
// output lengths and how far each endpoint's reported cache hits bear out
// what it expected them to hold.
func (s *Scheduler) Observe(req *Request, ep *endpoints.Endpoint, o Outcome) {
	if s.cost != nil {
		s.cost.observe(req, ep, o)
	}
}

var _ Observer = (*Scheduler)(nil)

// pickNote is what a cost-model pick predicted, kept on the request so its
// outcome can be compared with it.
type pickNote struct {
	ep *endpoints.Endpoint
	// guessed is the share of the prompt the chain index expected the
	// endpoint to hold (0 when a PrefixSource answered), of a matched
	// share matched (the proxy's token counts are estimates, the
	// response's usage exact: shares compare the two).
	guessed, matched float64
	// outputGiven: the request said its output length.
	outputGiven bool
	// sent is when the request was picked (unix ns), ahead the
	// endpoint's prefill backlog then, its own prompt included, and
	// prefill its own uncached prompt tokens (FirstByte).
	sent           int64
	ahead, prefill float64
}

// learned is what outcomes teach a cost model: the mean output length of
// requests that do not give one (float64 bits).
//
// Engine speeds are not learned from response timings. Tried in the
// virtual-time benchmark (e2e/routesim): inter-token times include the
// prefill chunks of requests that join the batch, and times to first token
// the decode steps they share, so both read 1.4–3× the engine's real step
// and prefill costs under ordinary load — which the cost already prices as
// harm and waiting. Folding them into the speeds counted that load twice
// and cut the closed-loop shared-prefix throughput from 2,110 to 1,470
// tokens/s. A median over only the requests that prefilled a long prompt
// where no wait was expected learns the prefill speed well (routesim, one
// seed: 0.27 of the profile's for an engine 4× faster, 1.09 where it is
// right), but prefill alone against the profile's decode breaks an
// engine that is uniformly faster, and no response gives a decode sample
// free of the batch's other work (bench README, session 15). The speeds
// are the profile's (pickerprofile, cost plugin).
type learned struct {
	mu     sync.Mutex
	output atomic.Uint64
}

// learnOutput is how far one outcome moves the expected output length.
const learnOutput = 0.02

func (l *learned) init(output float64) { l.output.Store(math.Float64bits(output)) }

func (l *learned) get(v *atomic.Uint64) float64 { return math.Float64frombits(v.Load()) }

// move folds sample into v with rate a, the sample clamped to [lo, hi].
func (l *learned) move(v *atomic.Uint64, sample, a, lo, hi float64) {
	if math.IsNaN(sample) || math.IsInf(sample, 0) {
		return
	}
	sample = min(max(sample, lo), hi)
	l.mu.Lock()
	cur := math.Float64frombits(v.Load())
	v.Store(math.Float64bits(cur + a*(sample-cur)))
	l.mu.Unlock()
}

// observe learns from one outcome of a pick this model made.
func (m *CostModel) observe(req *Request, ep *endpoints.Endpoint, o Outcome) {
	n := &req.note
	if n.ep != ep || ep == nil {
		return // another picker's pick, or none
	}
	l := &m.learn
	if o.UsageKnown && !n.outputGiven && o.Output > 0 {
		l.move(&l.output, float64(o.Output), learnOutput, 1, 1<<20)
	}
	if o.CachedKnown && o.UsageKnown && o.Prompt > 0 && n.guessed > 0 {
		// How far the endpoint's hits bear out the index's guesses (see
		// endpoints.CacheTrust). The index itself stays as it is: where
		// the endpoint held less than guessed, this request's prefill
		// wrote the rest, so the endpoint holds the whole prompt now.
		// (Forgetting the deeper prefixes there, as the picker once did,
		// dropped exactly what had just been cached: in routesim's
		// kv-pressure 6 % of picks missed a prefix another replica held.)
		// A server reports whole blocks only: one partial block is no miss.
		p := float64(o.Prompt)
		ep.NoteCached(n.guessed*p, float64(o.Cached)+tokensPerBlock, n.matched*p)
	}
}

// tokensPerBlock is the tokens of one 64-character block (estimate).
const tokensPerBlock = BlockChars / charsPerToken

// ExpectedOutput is the output length the model assumes for requests that
// do not say (learned from usage; for tests and the admin API).
func (m *CostModel) ExpectedOutput() float64 { return m.learn.get(&m.learn.output) }

// TargetModelOrModel is the model the request goes to after rewrites.
func (r *Request) TargetModelOrModel() string {
	if r.TargetModel != "" {
		return r.TargetModel
	}
	return r.Model
}

// FirstByter is implemented by pickers that want to know when a response
// to a request they picked for began: the endpoint's first token (the
// proxy's pipeline tells it as it writes a successful response's first
// byte to the client).
type FirstByter interface {
	FirstByte(req *Request, ep *endpoints.Endpoint, at time.Time)
}

// FirstByte implements FirstByter.
func (s *Scheduler) FirstByte(req *Request, ep *endpoints.Endpoint, at time.Time) {
	if s.cost != nil {
		s.cost.firstByte(req, ep, at)
	}
}

var _ FirstByter = (*Scheduler)(nil)

// firstByte takes what the endpoint has prefilled off its backlog: the
// request's uncached prompt, of which the backlog — drained at the
// profile's prefill speed — may still count some
// (endpoints.Endpoint.Prefilled). Only its own: what was queued ahead of
// it is not always done (a server prefills a short prompt beside a long
// one's chunks), and the backlog drains in the order it was filled, so
// what it still counts of the request is at most the request's prompt.
// The news goes to the other proxies through the fleet exchange, so that
// all count the same backlog: taken off only here, with 4 proxies, the
// proxies disagreed on which replicas were busy and copied prefixes
// (routesim, engine 4× faster than the profile, 4 proxies, 8 seeds:
// kv-pressure cache hits 23 % and TTFT p90 2.44 s, against 62 % and
// 1.37 s relayed and 59 % and 1.44 s with no first tokens taken off).
// So with several proxies and nothing arriving from the others lately (the
// exchange is down), nothing is taken off: in the same report's 4 proxies
// without the exchange, taking off alone moved shared prefixes' TTFT p90
// from 8.14 to 9.42 s (15 seeds). The others' scrapes count as arriving
// too, not only their sends: while a saturated fleet's users all wait for
// answers nobody sends, yet the first tokens of their prompts come and
// must be taken off (routesim, engine 4× faster than the profile,
// saturated shared prefixes, 4 proxies, 15 seeds: TTFT p90 15.76 s before
// the rule, 17.08 s with sends alone).
func (m *CostModel) firstByte(req *Request, ep *endpoints.Endpoint, at time.Time) {
	n := &req.note
	if n.ep != ep || ep == nil || n.sent == 0 || !(n.ahead > 0) {
		return // another picker's pick, or nothing queued
	}
	rate := 1 / m.est.prefillToken
	now := at.UnixNano()
	if ep.Proxies() > 1 && now-m.exchangeAt.Load() >= int64(ep.StaleAfter()) {
		return
	}
	left := min(n.ahead-float64(max(now-n.sent, 0))/1e9*rate, n.prefill)
	if !(left > 0) {
		return // the backlog drained it already
	}
	ep.Prefilled(left, now, now, rate)
	m.out.addPrefilled(ep.Hash, left, now)
}
