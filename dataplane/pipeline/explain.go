package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/openai"
	"github.com/infergate/infergate/dataplane/picker"
)

// ExplainRequest is a request to explain (POST /explain on the admin API):
// what a client would send to one of the gateway's ports.
type ExplainRequest struct {
	// Port is the listener port the request arrives on; 0 takes the only
	// one (an error when there are several).
	Port uint32 `json:"port,omitempty"`
	// Method defaults to POST, Path to /v1/chat/completions, Host to
	// "localhost".
	Method  string      `json:"method,omitempty"`
	Path    string      `json:"path,omitempty"`
	Host    string      `json:"host,omitempty"`
	Headers http.Header `json:"headers,omitempty"`
	// Body is the request body as sent (an OpenAI JSON request).
	Body string `json:"body,omitempty"`
}

// Explanation is how the proxy would route and pick a request now, without
// sending it anywhere.
type Explanation struct {
	Port uint32 `json:"port"`
	// Route is the matched rule (gateway/namespace/route/index), HTTPRoute
	// its HTTPRoute; empty when nothing matches (the request gets 404).
	Route     string `json:"route,omitempty"`
	HTTPRoute string `json:"httpRoute,omitempty"`
	// Backends are the rule's backendRefs with their weights; Backend the
	// one the weighted draw chose for this explanation (each request
	// draws again).
	Backends []ExplainBackend `json:"backends,omitempty"`
	Backend  string           `json:"backend,omitempty"`
	Pool     bool             `json:"pool,omitempty"`
	// Model is the client's model, TargetModel where a model rule sends
	// it, Priority the request's (objective or model rule).
	Model       string `json:"model,omitempty"`
	TargetModel string `json:"targetModel,omitempty"`
	Priority    int32  `json:"priority"`
	// Outcome says what would happen: "pick" (an endpoint would be
	// chosen), "queue" (the pool is saturated: the request would wait in
	// its wait queue), "shed" (429), "no endpoint" (503), "invalid" (400),
	// "redirect", "no route" (404).
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	// Saturation is the pool's (picker.Saturation): at ≥ 1 sheddable
	// requests are shed and others wait in a wait queue if it has one.
	Saturation *float64 `json:"saturation,omitempty"`
	// Chosen is the endpoint the picker would choose now (among
	// candidates within its tie tolerance of the cheapest, prompts
	// without a full block are placed at random, so asking again may name
	// another).
	Chosen string `json:"chosen,omitempty"`
	// PromptTokens and OutputTokens are the cost model's estimates for the
	// request (output: max_tokens when given, else the mean it learned).
	PromptTokens float64 `json:"promptTokens,omitempty"`
	OutputTokens float64 `json:"outputTokens,omitempty"`
	// Note says why candidates carry no cost terms, when they do not.
	Note string `json:"note,omitempty"`
	// Candidates are the backend's endpoints as the picker sees them.
	Candidates []ExplainCandidate `json:"candidates,omitempty"`
}

// ExplainBackend is one backendRef of the matched rule.
type ExplainBackend struct {
	Backend string `json:"backend"`
	Weight  uint32 `json:"weight"`
}

// ExplainCandidate is one endpoint the picker would choose among, with the
// inputs it decides on.
type ExplainCandidate struct {
	Address string `json:"address"`
	Pod     string `json:"pod,omitempty"`
	// Fresh says whether its scraped metrics are young enough to count;
	// Waiting, Running and KVCache are that scrape's, Unseen the requests
	// the proxies sent since it (estimated from this proxy's).
	Fresh    bool     `json:"fresh"`
	Waiting  *float64 `json:"waiting,omitempty"`
	Running  *float64 `json:"running,omitempty"`
	KVCache  *float64 `json:"kvCache,omitempty"`
	Unseen   float64  `json:"unseen"`
	AgeMs    *float64 `json:"metricsAgeMs,omitempty"`
	InFlight int64    `json:"inFlight"`
	Ejected  bool     `json:"ejected,omitempty"`
	// Terms are the cost model's inputs and terms for this candidate
	// (seconds; see picker.Terms), absent for an endpoint the picker
	// left out (ejected) and for pickers without a cost model.
	Terms *picker.Terms `json:"terms,omitempty"`
}

// MaxBodyBytes is the largest request body read for its model.
func (m *Pipeline) MaxBodyBytes() int64 { return m.opts.MaxBodyBytes }

// Explain routes req as the request path would — body model, route match,
// the rule's filters, weighted backend, model rule, saturation — and asks
// the backend's picker for its choice, without sending anything and
// without recording the pick anywhere (a prefix index, a wait queue or an
// endpoint's counters).
func (m *Pipeline) Explain(req ExplainRequest) (*Explanation, error) {
	st := m.state.Load()
	if st == nil {
		return nil, errors.New("no config yet")
	}
	if req.Port == 0 {
		if len(st.ports) != 1 {
			return nil, fmt.Errorf("the gateway has %d listener ports: name one (port)", len(st.ports))
		}
		for p := range st.ports {
			req.Port = p
		}
	}
	ps := st.ports[req.Port]
	if ps == nil {
		return nil, fmt.Errorf("no listener on port %d", req.Port)
	}
	if req.Method == "" {
		req.Method = http.MethodPost
	}
	if req.Path == "" {
		req.Path = "/v1/chat/completions"
	}
	if req.Host == "" {
		req.Host = "localhost"
	}
	if int64(len(req.Body)) > m.opts.MaxBodyBytes {
		return nil, fmt.Errorf("body of %d bytes exceeds the gateway limit of %d", len(req.Body), m.opts.MaxBodyBytes)
	}
	r := httptest.NewRequest(req.Method, req.Path, strings.NewReader(req.Body))
	r.Host = req.Host
	for k, vs := range req.Headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	if r.Header.Get("Content-Type") == "" && req.Body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	ex := &Explanation{Port: req.Port}

	var (
		body      *openai.Body
		model     openai.ModelField
		hasModel  bool
		maxTokens int64
		invalid   error
		api       openai.Endpoint
	)
	if r.Method == http.MethodPost {
		api = openai.EndpointOf(r.URL.Path)
	}
	if wantsBody(r) {
		var err error
		body, err = openai.ReadBody(io.NopCloser(bytes.NewReader([]byte(req.Body))), int64(len(req.Body)), m.opts.MaxBodyBytes)
		if err != nil {
			return nil, fmt.Errorf("reading the body: %w", err)
		}
		defer body.Close()
		sc := openai.ScanBody(api, body.Bytes())
		model, hasModel, invalid, maxTokens = sc.Model, sc.HasModel, sc.Invalid, sc.MaxTokens
		if hasModel {
			r.Header[modelHeader] = []string{model.Name}
		}
	}
	ex.Model = model.Name
	route, match := ps.router.Match(r)
	if route == nil {
		ex.Outcome, ex.Reason = "no route", "no route for "+r.Host+r.URL.Path
		return ex, nil
	}
	ex.Route, ex.HTTPRoute = route.Name, route.Route
	for _, b := range route.Backends {
		ex.Backends = append(ex.Backends, ExplainBackend{Backend: b.Name, Weight: b.Weight})
	}
	if route.Filters.Redirect != nil {
		ex.Outcome = "redirect"
		return ex, nil
	}
	if route.TotalWeight == 0 {
		ex.Outcome, ex.Reason = "no endpoint", "the rule has no backend with weight (500)"
		return ex, nil
	}
	ref := route.PickBackend(rand.Uint64N(route.TotalWeight))
	if ref.Backend == nil {
		ex.Outcome, ex.Reason = "no endpoint", "invalid backend reference: "+ref.InvalidReason
		return ex, nil
	}
	if ref.Filters.Redirect != nil {
		ex.Outcome = "redirect"
		return ex, nil
	}
	bs := st.backends[ref.Name]
	ex.Backend, ex.Pool = bs.cfg.Source, bs.cfg.IsPool()
	if api != openai.Unknown && body == nil {
		invalid = openai.Validate(api, nil)
	}
	if bs.cfg.IsPool() && invalid != nil {
		ex.Outcome, ex.Reason = "invalid", invalid.Error()
		return ex, nil
	}
	objective := objectiveOf(r) // as the client sent it, before the rule's filters
	if !route.Filters.Empty() {
		applyRequestFilters(r, &route.Filters, match)
	}
	c := call{st: st, route: route, match: match, r: r, body: body, preq: &picker.Request{MaxTokens: int(maxTokens)},
		model: model, inBody: model, hasModel: hasModel, poolsOK: invalid == nil, objective: objective}
	m.aim(&c, ref, bs)
	ex.TargetModel, ex.Priority = c.preq.TargetModel, c.preq.Priority

	now := time.Now()
	for _, e := range bs.eps {
		ex.Candidates = append(ex.Candidates, explainCandidate(e, now))
	}
	if !bs.cfg.IsPool() {
		ex.Outcome, ex.Chosen = "pick", leastInFlight(bs.eps)
		if ex.Chosen == "" {
			ex.Outcome, ex.Reason = "no endpoint", "no ready endpoint (503)"
		}
		return ex, nil
	}
	sat := picker.Saturation(bs.eps, now)
	ex.Saturation = &sat
	sheds := false
	if s, ok := bs.picker.(interface{ Sheds() bool }); ok {
		sheds = s.Sheds()
	}
	switch {
	case len(bs.eps) == 0:
		ex.Outcome, ex.Reason = "no endpoint", "no ready endpoint (503)"
		return ex, nil
	case sheds && picker.Shed(c.preq.Priority, sat):
		ex.Outcome, ex.Reason = "shed", fmt.Sprintf("sheddable (priority %d) and the pool is saturated (429)", c.preq.Priority)
		return ex, nil
	case bs.queue != nil && picker.Headroom(bs.eps, now) == 0:
		ex.Outcome, ex.Reason = "queue", "the pool is saturated: the request would wait in its wait queue"
	default:
		ex.Outcome = "pick"
	}
	explainPick(ex, bs.picker, c.preq, bs.eps)
	if bs.ext != nil {
		// The external picker is not asked (that would be a request to
		// it); what the pool's own picker would do is what FailOpen does.
		ex.Chosen = ""
		ex.Note = "the pool's endpoint picker " + bs.cfg.Picker.Service + " chooses and is not asked: the terms are the pool's own picker's, which picks only when the endpoint picker fails and the pool fails open"
	}
	return ex, nil
}

// explainPick asks p (a pool's picker) what it would choose for req among
// eps and why, into ex: the chosen endpoint and each candidate's terms.
func explainPick(ex *Explanation, p picker.Picker, req *picker.Request, eps []*endpoints.Endpoint) {
	s, ok := p.(*picker.Scheduler)
	if !ok {
		ex.Note = fmt.Sprintf("the pool's picker (%T) does not explain its picks", p)
		return
	}
	d, err := s.Explain(req, eps)
	switch {
	case errors.Is(err, picker.ErrNoExplanation):
		ex.Note = "the pool's picker profile sums weighted scorers: no per-candidate cost terms (the cost model explains its picks)"
		return
	case err != nil:
		ex.Outcome, ex.Reason = "no endpoint", err.Error()
		return
	}
	ex.Chosen, ex.PromptTokens, ex.OutputTokens = d.Chosen, d.PromptTokens, d.OutputTokens
	terms := make(map[string]*picker.Terms, len(d.Candidates))
	for i := range d.Candidates {
		terms[d.Candidates[i].Endpoint] = &d.Candidates[i].Terms
	}
	for i := range ex.Candidates {
		ex.Candidates[i].Terms = terms[ex.Candidates[i].Address]
	}
}

func explainCandidate(e *endpoints.Endpoint, now time.Time) ExplainCandidate {
	c := ExplainCandidate{Address: e.Address, Pod: e.Pod, InFlight: e.InFlight(), Ejected: e.Ejected(now)}
	m, fresh := e.Fresh(now, e.StaleAfter())
	c.Fresh = fresh
	if m != nil {
		w, r, kv := m.Waiting, m.Running, m.KVCacheUsage
		age := float64(now.Sub(m.At).Microseconds()) / 1000
		c.Waiting, c.Running, c.KVCache, c.AgeMs = &w, &r, &kv, &age
		c.Unseen = e.Unseen(m, now)
	}
	return c
}

// leastInFlight is what the Service picker (picker.LeastInFlight) would
// choose, ties to the first.
func leastInFlight(eps []*endpoints.Endpoint) string {
	best := ""
	var min int64
	for _, e := range eps {
		if n := e.InFlight(); best == "" || n < min {
			best, min = e.Address, n
		}
	}
	return best
}
