package picker

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// Candidate is one endpoint as a scheduling cycle sees it.
type Candidate struct {
	Endpoint *endpoints.Endpoint
	// Metrics is the latest scrape (nil before the first one).
	Metrics *endpoints.Metrics
	// Fresh is true when Metrics is younger than the endpoint's staleness
	// bound. Scorers treat stale endpoints as unknown-and-busy.
	Fresh bool
	// Queue is the estimated waiting queue: the scraped queue plus the
	// requests all proxies sent since that scrape, as estimated from this
	// proxy's (Endpoint.Unseen); for stale endpoints (when
	// no endpoint is fresh) the proxy's own in-flight count.
	Queue float64
}

// Cycle is the state of one pick, shared by its filters and scorers. It is
// pooled: plugins must not keep it or its slices after returning.
type Cycle struct {
	Req *Request
	Now time.Time
	// Candidates left after filtering.
	Candidates []Candidate
	// AnyFresh reports whether at least one candidate has fresh metrics.
	AnyFresh bool
	// MeanQueue is the mean Queue over the candidates with a known queue.
	MeanQueue float64
	// LoRA reports whether any candidate reports LoRA state (max_lora > 0).
	LoRA bool
	// rng is the scheduler's tie breaker (nil: math/rand's global source).
	rng *rand.Rand

	// Prompt prefix keys, computed once when a scorer asks (PrefixKeys).
	keys   []prefixKey
	blocks int
	hashed bool
	// adapter: 0 unknown yet, 1 the model is a LoRA adapter some endpoint
	// runs or queues, -1 it is not.
	adapter int8
	// source is the scheduler's PrefixSource (nil: none); sourceOut its
	// answer for this request once asked (nil: no answer).
	source    *PrefixSource
	sourced   bool
	sourceBuf []int
	sourceOut []int
	// chain keys of the prompt (cost model), computed on first use, and
	// per candidate the matched depth, the blocks expected held, the KV
	// cache's free part and size, and the cached tokens the index guessed
	// (before CacheTrust).
	chainKeys   []chainKey
	chainBlocks int
	chained     bool
	depth       []int32
	held        []float64
	free, room  []float64
	guessed     []float64
	terms       []Terms
	// explain: the cycle only explains (Scheduler.Explain), it must not
	// change what the picker remembers.
	explain bool
	// prompt and output: the request's estimated tokens (cost model).
	prompt, output float64
	outputGiven    bool
	// own: this proxy's unseen load as the cost model prices it (see
	// ownLoad).
	own      ownLoad
	scores   []float64
	total    []float64
	matches  []prefixMatch
	prefixOf map[*endpoints.Endpoint]int32
}

var cyclePool = sync.Pool{New: func() any {
	return &Cycle{
		keys:     make([]prefixKey, 0, 16),
		prefixOf: make(map[*endpoints.Endpoint]int32, 8),
	}
}}

func getCycle(req *Request, now time.Time, n int) *Cycle {
	c := cyclePool.Get().(*Cycle)
	c.Req, c.Now = req, now
	if cap(c.Candidates) < n {
		c.Candidates = make([]Candidate, 0, n)
		c.scores = make([]float64, n)
		c.total = make([]float64, n)
		c.depth = make([]int32, n)
		c.held = make([]float64, n)
		c.free = make([]float64, n)
		c.room = make([]float64, n)
		c.guessed = make([]float64, n)
		c.terms = make([]Terms, n)
	}
	c.Candidates = c.Candidates[:0]
	c.AnyFresh, c.MeanQueue, c.LoRA = false, 0, false
	c.keys, c.blocks, c.hashed, c.adapter = c.keys[:0], 0, false, 0
	c.source, c.sourced, c.sourceOut = nil, false, nil
	c.chainKeys, c.chainBlocks, c.chained = c.chainKeys[:0], 0, false
	c.explain = false
	clear(c.prefixOf)
	clear(c.matches)
	c.matches = c.matches[:0]
	return c
}

func putCycle(c *Cycle) {
	c.Req = nil
	clear(c.Candidates[:cap(c.Candidates)]) // drop endpoint pointers
	cyclePool.Put(c)
}

// prefixMatch is an endpoint the proxy sent a prefix of blocks blocks to.
type prefixMatch struct {
	ep     *endpoints.Endpoint
	blocks int32
}

// Model is the model the request goes to (after rewrites).
func (c *Cycle) Model() string {
	if c.Req.TargetModel != "" {
		return c.Req.TargetModel
	}
	return c.Req.Model
}

// IsAdapter reports whether the request's model is a LoRA adapter that
// some candidate reports running or waiting (vllm:lora_requests_info).
func (c *Cycle) IsAdapter() bool {
	if c.adapter == 0 {
		c.adapter = -1
		if !c.LoRA {
			return false
		}
		model := c.Model()
		bit := endpoints.AdapterBit(model)
		for i := range c.Candidates {
			m := c.Candidates[i].Metrics
			if m != nil && m.MaxLoRA > 0 && m.MayReportAdapter(bit) && (slices.Contains(m.RunningAdapters, model) || slices.Contains(m.WaitingAdapters, model)) {
				c.adapter = 1
				break
			}
		}
	}
	return c.adapter > 0
}

// prefixKeys returns the request's prompt prefix keys and its number of
// full blocks (see appendPrefixKeys).
func (c *Cycle) prefixKeys() ([]prefixKey, int) {
	if !c.hashed {
		c.keys, c.blocks = appendPrefixKeys(c.keys[:0], c.Model(), c.Req.Body)
		c.hashed = true
	}
	return c.keys, c.blocks
}

// load fills Candidates from cands: ejected endpoints are left out unless
// every endpoint is ejected (serving on a maybe-bad endpoint beats refusing
// everything), and each candidate's queue estimate is computed.
func (c *Cycle) load(cands []*endpoints.Endpoint) {
	for pass := 0; pass < 2 && len(c.Candidates) == 0; pass++ {
		for _, e := range cands {
			if pass == 0 && e.Ejected(c.Now) {
				continue
			}
			m, fresh := e.Fresh(c.Now, e.StaleAfter())
			c.Candidates = append(c.Candidates, Candidate{Endpoint: e, Metrics: m, Fresh: fresh})
			c.AnyFresh = c.AnyFresh || fresh
		}
	}
	var sum float64
	var n int
	for i := range c.Candidates {
		cd := &c.Candidates[i]
		c.LoRA = c.LoRA || (cd.Metrics != nil && cd.Metrics.MaxLoRA > 0)
		switch {
		case cd.Fresh:
			cd.Queue = cd.Metrics.Waiting + cd.Endpoint.Unseen(cd.Metrics, c.Now)
		case !c.AnyFresh:
			// Nothing is known about any endpoint: own in-flight requests
			// are the best signal left.
			cd.Queue = float64(cd.Endpoint.InFlight())
		default:
			// Unknown while others are known: scorers rate it 0.
			continue
		}
		sum += cd.Queue
		n++
	}
	if n > 0 {
		c.MeanQueue = sum / float64(n)
	}
}

// chain returns the prompt's chain keys and its number of full blocks.
func (c *Cycle) chain() ([]chainKey, int) {
	if !c.chained {
		c.chainKeys, c.chainBlocks = appendChain(c.chainKeys[:0], c.Model(), c.Req.Body)
		c.chained = true
	}
	return c.chainKeys, c.chainBlocks
}
