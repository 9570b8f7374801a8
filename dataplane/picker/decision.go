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

// SetDecisionHook calls fn with every pick's decision (nil turns it off).
// A decision is built only while a hook is set; fn runs on the request's
// goroutine and must be quick.
func (s *Scheduler) SetDecisionHook(fn func(*Decision)) {
	if fn == nil {
		s.hook.Store(nil)
		return
	}
	s.hook.Store(&fn)
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
