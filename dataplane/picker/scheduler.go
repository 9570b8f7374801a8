package picker

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// WeightedScorer is a scorer with its weight in the sum.
type WeightedScorer struct {
	Scorer Scorer
	Weight float64
}

// Scheduler is the full picker: ejected endpoints are filtered out, the
// sheddable requests of a saturated pool are refused, every candidate gets
// the weighted sum of its scores, and the best wins (ties at random). It is
// safe for concurrent use.
type Scheduler struct {
	scorers []WeightedScorer
	// preparers classify the request before any scorer runs; recorders
	// are the scorers that learn from each final pick.
	preparers []Preparer
	recorders []Recorder
	// shed refuses sheddable requests when the pool is saturated.
	shed bool
	// now defaults to time.Now; tests set it.
	now func() time.Time
	// recordScores paces copying scores to the endpoints for the admin
	// API; copying on every pick would cost two atomic stores per
	// candidate.
	recordScores every
	// cost, when set, picks instead of the weighted scorers.
	cost *CostModel
	// hook receives the Decisions of the picks it wants (SetDecisionHook).
	hook atomic.Pointer[DecisionHook]
	// source is the optional PrefixSource (SetPrefixSource).
	source atomic.Pointer[PrefixSource]
	// rng breaks ties (SetRand; nil: math/rand's global source).
	rng *rand.Rand
}

// scoreRecordEvery is how fresh the admin API's last scores are.
const scoreRecordEvery = 100 * time.Millisecond

// NewScheduler returns a scheduler with the given scorers (weights ≤ 0 are
// dropped). shed enables load shedding of sheddable requests.
func NewScheduler(scorers []WeightedScorer, shed bool) *Scheduler {
	s := &Scheduler{shed: shed, now: time.Now}
	for _, ws := range scorers {
		if ws.Weight <= 0 || ws.Scorer == nil {
			continue
		}
		s.scorers = append(s.scorers, ws)
		if r, ok := ws.Scorer.(Recorder); ok {
			s.recorders = append(s.recorders, r)
		}
		if p, ok := ws.Scorer.(Preparer); ok {
			s.preparers = append(s.preparers, p)
		}
	}
	return s
}

// NewCostScheduler returns a scheduler that picks with the cost model m.
func NewCostScheduler(m *CostModel, shed bool) *Scheduler {
	return &Scheduler{shed: shed, now: time.Now, cost: m}
}

// Scorers returns the scheduler's scorers (for the admin API and tests).
func (s *Scheduler) Scorers() []WeightedScorer { return slices.Clone(s.scorers) }

// Sheds reports whether the scheduler sheds sheddable requests.
func (s *Scheduler) Sheds() bool { return s.shed }

// Pick implements Picker. It returns ErrNoEndpoint without candidates and
// ErrShed for a sheddable request to a saturated pool.
func (s *Scheduler) Pick(req *Request, cands []*endpoints.Endpoint) (*endpoints.Endpoint, error) {
	if len(cands) == 0 {
		return nil, ErrNoEndpoint
	}
	c := getCycle(req, s.now(), len(cands))
	defer putCycle(c)
	c.source, c.rng = s.source.Load(), s.rng
	c.load(cands)
	if s.shed && Shed(req.Priority, c.saturation()) {
		return nil, ErrShed
	}
	if s.cost != nil {
		i := s.cost.choose(c)
		s.cost.record(c, i)
		s.recordTotals(c)
		s.explainPick(c, i)
		return c.Candidates[i].Endpoint, nil
	}
	s.score(c)
	best := -1
	var ties uint64
	for i := range c.Candidates {
		switch {
		case best < 0 || c.total[i] > c.total[best]:
			best, ties = i, 1
		case c.total[i] == c.total[best]:
			// Reservoir sampling: each tied candidate equally likely.
			ties++
			if uint64n(s.rng, ties) == 0 {
				best = i
			}
		}
	}
	ep := c.Candidates[best].Endpoint
	for _, r := range s.recorders {
		r.Record(c, ep)
	}
	return ep, nil
}

func (s *Scheduler) score(c *Cycle) {
	for _, p := range s.preparers {
		p.Prepare(c)
	}
	n := len(c.Candidates)
	total, scores := c.total[:n], c.scores[:n]
	clear(total)
	for _, ws := range s.scorers {
		ws.Scorer.Score(c, scores)
		for i, v := range scores {
			total[i] += ws.Weight * v
		}
	}
	s.recordTotals(c)
}

// recordTotals copies each candidate's total (the scorers' weighted sum,
// or the cost model's cost) to its endpoint for the admin API, at most
// every scoreRecordEvery.
func (s *Scheduler) recordTotals(c *Cycle) {
	if !s.recordScores.claim(c.Now.UnixNano(), scoreRecordEvery) {
		return
	}
	for i := range c.Candidates {
		c.Candidates[i].Endpoint.RecordScore(c.total[i], c.Now)
	}
}

// Preparer is a scorer that classifies the request for all scorers before
// they run (LoRAScorer marks models it knows as adapters, which the prefix
// scorer then leaves alone).
type Preparer interface {
	Prepare(c *Cycle)
}

// Recorder is a scorer that learns where a pick sent the request (prefix
// index, adapter placement memory).
type Recorder interface {
	Record(c *Cycle, ep *endpoints.Endpoint)
}

// Done is the feedback the server gives after each attempt to an
// endpoint: ok is false for connect errors and 5xx answers, which eject
// the endpoint with backoff after repeated failures.
func (s *Scheduler) Done(ep *endpoints.Endpoint, ok bool) {
	ep.ReportResult(ok, s.now())
}

// Feedback is implemented by pickers that learn from outcomes: the server
// calls Done after every attempt to an endpoint with ok = false for
// connect errors and 5xx responses.
type Feedback interface {
	Done(ep *endpoints.Endpoint, ok bool)
}

var (
	_ Picker   = (*Scheduler)(nil)
	_ Feedback = (*Scheduler)(nil)
)

// Fleet returns the scheduler's side of the fleet exchange: its cost model,
// else its prefix scorer; nil when it has neither.
func (s *Scheduler) Fleet() Fleet {
	if s.cost != nil {
		return s.cost
	}
	if p := s.Prefix(); p != nil {
		return p
	}
	return nil
}

// Prefix returns the scheduler's prefix scorer, nil when it has none.
func (s *Scheduler) Prefix() *PrefixScorer {
	for _, ws := range s.scorers {
		if p, ok := ws.Scorer.(*PrefixScorer); ok {
			return p
		}
	}
	return nil
}
