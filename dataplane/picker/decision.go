package picker

import (
	"errors"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// Decision is one pick explained: what the picker estimated for each
// candidate and which it chose. Only cost-model schedulers explain picks.
type Decision struct {
	Model string `json:"model,omitempty"`
	// PromptTokens and OutputTokens are the request's estimated prompt
	// and expected output tokens.
	PromptTokens float64 `json:"promptTokens"`
	OutputTokens float64 `json:"outputTokens"`
	// Chosen is the picked endpoint's address ("" when the pick failed).
	Chosen     string              `json:"chosen,omitempty"`
	Candidates []CandidateDecision `json:"candidates"`
}

// CandidateDecision is one candidate's inputs and cost terms.
type CandidateDecision struct {
	Endpoint string `json:"endpoint"`
	Terms
}

// ErrNoExplanation means the scheduler does not use the cost model (its
// weighted scorers have no per-term breakdown).
var ErrNoExplanation = errors.New("picker: only the cost model explains picks")

// Explain returns how s would pick for req among cands now, without
// recording anything: no prefix is remembered, no load is counted, and
// nothing is sent.
func (s *Scheduler) Explain(req *Request, cands []*endpoints.Endpoint) (*Decision, error) {
	if s.cost == nil {
		return nil, ErrNoExplanation
	}
	if len(cands) == 0 {
		return nil, ErrNoEndpoint
	}
	c := getCycle(req, s.now(), len(cands))
	defer putCycle(c)
	c.source = s.source.Load()
	c.explain = true
	c.load(cands)
	i := s.cost.choose(c)
	return c.decision(i), nil
}

// DecisionHook asks for the decisions of some picks: Want runs on every
// pick of a cost-model scheduler, and only when it says yes is the
// Decision built and handed to Record. Both run on the request's goroutine,
// inside Pick, and must be quick; Want must not allocate, so a pick
// nobody wants explained stays allocation-free.
type DecisionHook struct {
	// Want reports whether req's pick should be explained (a paced ring
	// of recent decisions, a request whose trace records).
	Want func(req *Request) bool
	// Record receives req's decision.
	Record func(req *Request, d *Decision)
}

// SetDecisionHook sets the hook that receives pick decisions (nil, or
// one without Want or Record, turns it off).
func (s *Scheduler) SetDecisionHook(h *DecisionHook) {
	if h == nil || h.Want == nil || h.Record == nil {
		s.hook.Store(nil)
		return
	}
	s.hook.Store(h)
}

// explainPick hands the decision of the pick of candidate i to the hook
// when it wants it.
func (s *Scheduler) explainPick(c *Cycle, i int) {
	if h := s.hook.Load(); h != nil && h.Want(c.Req) {
		h.Record(c.Req, c.decision(i))
	}
}

// decision builds c's Decision with candidate chosen picked.
func (c *Cycle) decision(chosen int) *Decision {
	d := &Decision{Model: c.Model(), PromptTokens: c.prompt, OutputTokens: c.output,
		Candidates: make([]CandidateDecision, len(c.Candidates))}
	if chosen >= 0 {
		d.Chosen = c.Candidates[chosen].Endpoint.Address
	}
	for i := range c.Candidates {
		d.Candidates[i] = CandidateDecision{Endpoint: c.Candidates[i].Endpoint.Address, Terms: c.terms[i]}
	}
	return d
}
