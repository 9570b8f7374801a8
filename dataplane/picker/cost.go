package picker

import (
	"math"
	"math/rand/v2"

	"github.com/infergate/infergate/proto/pickerprofile"
)

// CostModel picks the candidate where a request is estimated to cost least:
// its own time to first token and decode, plus the time it takes from the
// requests already running there. Per candidate, in seconds:
//
//	wait     = waiting requests ÷ the endpoint's completion rate (a
//	           saturated server admits one as another finishes)
//	prefill  = uncached prompt tokens × prefill time per token
//	decode   = output tokens × step time at the batch size with this request
//	harm     = running requests × (prefill + output tokens × the step time
//	           one more sequence adds)
//	cost     = wait + prefill + decode + harm
//
// Uncached tokens come from the longest prefix the candidate is believed to
// hold (its PrefixSource, else where this proxy sent the prompt's prefixes
// and has not written a cache's worth of tokens since). Cache affinity is
// therefore a term of the cost, never an override: a hot prefix's home
// fills up until a cold prefill elsewhere is cheaper than waiting, and then
// the prefix has a second home.
type CostModel struct {
	index *chainIndex
	lora  *LoRAScorer
	est   estimates
}

// estimates are the engine speeds the model prices with.
type estimates struct {
	// prefillToken is seconds of prefill per uncached prompt token.
	prefillToken float64
	// stepBase and stepPerSeq: a decode step takes stepBase + stepPerSeq ×
	// running sequences (seconds).
	stepBase, stepPerSeq float64
	// output is the expected output tokens of a request that does not say.
	output float64
}

func defaultEstimates() estimates {
	return estimates{prefillToken: 0.25e-3, stepBase: 12e-3, stepPerSeq: 0.8e-3, output: 256}
}

// NewCostModel returns a cost model with an own prefix index of size chain
// keys (DefaultChainIndexSize when ≤ 0).
func NewCostModel(size int) *CostModel {
	return &CostModel{index: newChainIndex(size), lora: NewLoRAScorer(), est: defaultEstimates()}
}

// choose returns the index of the cheapest candidate of c (ties at random).
func (m *CostModel) choose(c *Cycle) int {
	m.lora.Prepare(c)
	n := len(c.Candidates)
	keys, blocks := c.chain()
	room := c.room[:n]
	for i := range c.Candidates {
		room[i] = math.Inf(1)
		if md := c.Candidates[i].Metrics; md != nil && md.KVCapacity > 0 {
			room[i] = md.KVCapacity * max(1-md.KVCacheUsage, 0.05)
		}
	}
	depth := c.depth[:n]
	m.index.match(keys, c.Candidates, room, depth)
	known := c.cachedTokens()
	prompt := float64(len(promptStart(c.Req.Body))) / charsPerToken
	c.prompt, c.output = prompt, m.est.output
	if mt := maxTokens(c.Req.Body); mt > 0 {
		c.output = float64(mt)
	}
	lora := c.scores[:n]
	m.lora.Score(c, lora)
	cost := c.total[:n]
	uncached := c.uncached[:n]
	best := -1
	var ties uint64
	for i := range c.Candidates {
		cd := &c.Candidates[i]
		cached := float64(depth[i]) * BlockChars / charsPerToken
		if blocks > 0 && int(depth[i]) == blocks {
			cached = prompt // the whole prompt went there
		}
		if known != nil && known[i] >= 0 {
			cached = float64(known[i])
		}
		uncached[i] = max(prompt-cached, 1)
		cost[i] = m.cost(c, cd, uncached[i], c.output, lora[i])
		switch {
		case best < 0 || cost[i] < cost[best]:
			best, ties = i, 1
		case cost[i] == cost[best]:
			ties++
			if rand.Uint64N(ties) == 0 {
				best = i
			}
		}
	}
	return best
}

// cost prices the request on one candidate.
func (m *CostModel) cost(c *Cycle, cd *Candidate, uncached, out, lora float64) float64 {
	e := &m.est
	var waiting, running float64
	known := cd.Fresh || !c.AnyFresh
	switch {
	case cd.Fresh:
		waiting, running = cd.Metrics.Waiting, cd.Metrics.Running
		// Requests sent since the scrape queue behind the waiting ones,
		// or join the batch when nothing waits.
		if unseen := cd.Queue - waiting; waiting >= 1 {
			waiting += unseen
		} else {
			running += unseen
		}
	default:
		// No usable metrics: what this proxy has open there, spread over
		// the proxies (the others send about as much).
		running = float64(cd.Endpoint.InFlight() * int64(max(cd.Endpoint.Proxies(), 1)))
	}
	step := e.stepBase + e.stepPerSeq*(running+1)
	prefill := uncached * e.prefillToken
	var wait float64
	if waiting > 0 {
		rate := cd.Endpoint.DoneRate()
		if floor := max(running, 1) / (e.output * step); rate < floor {
			// Too few completions seen to measure: a full batch turns
			// over once per request's decode.
			rate = floor
		}
		wait = waiting / rate
	}
	decode := out * step
	harm := running * (prefill + out*e.stepPerSeq)
	total := wait + prefill + decode + harm
	if lora < 1 {
		// An adapter request where its adapter is not planned waits for a
		// slot and a load: up to a whole request's time for a busy slot.
		total += (1 - lora) * (decode + prefill + step*e.output)
	}
	if !known {
		// Metrics missing while others have them: kept in rotation on its
		// own signals, but a known endpoint of equal cost goes first.
		total *= 1.25
	}
	return total
}

// record notes that the request went to candidate i.
func (m *CostModel) record(c *Cycle, i int) {
	ep := c.Candidates[i].Endpoint
	keys, _ := c.chain()
	// Everything the request allocates in the endpoint's KV cache pushes
	// older prefixes towards eviction; the other proxies write about as
	// much as this one.
	ep.AddWritten(int64((c.uncached[i] + c.output) * float64(max(ep.Proxies(), 1))))
	m.index.record(keys, ep, ep.Written())
	m.lora.Record(c, ep)
}

// maxTokens reads max_tokens or max_completion_tokens from a JSON body
// without decoding it (0 when absent or not a plain number).
func maxTokens(body []byte) int {
	for _, k := range [...]string{`"max_tokens"`, `"max_completion_tokens"`} {
		if v := numberAfter(body, k); v > 0 {
			return v
		}
	}
	return 0
}

// numberAfter is the non-negative integer following key and a colon.
func numberAfter(body []byte, key string) int {
	for i := 0; i+len(key) <= len(body); i++ {
		if string(body[i:i+len(key)]) != key {
			continue
		}
		j := i + len(key)
		for j < len(body) && (body[j] == ' ' || body[j] == ':' || body[j] == '\t' || body[j] == '\n' || body[j] == '\r') {
			j++
		}
		v := 0
		k := j
		for k < len(body) && body[k] >= '0' && body[k] <= '9' && v < math.MaxInt32/10 {
			v = v*10 + int(body[k]-'0')
			k++
		}
		if k > j {
			return v
		}
	}
	return 0
}

// newCostModel builds the cost model of a validated profile entry.
func newCostModel(v pickerprofile.Values) *CostModel {
	return NewCostModel(v.Count("index-size"))
}
