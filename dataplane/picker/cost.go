package picker

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

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
	// homes plans where hot prefixes live (see prefixHomes): a prefix
	// gets ⌈its share of the traffic × endpoints⌉ homes, balanced over
	// the endpoints, the same on every proxy; its homes are believed to
	// hold it.
	homes prefixHomes
	plan  planParams
	// affinityBlocks is how many leading blocks key the plan.
	affinityBlocks int32
	usePlan        bool
	x              knobs
	// out holds this proxy's sends for the fleet exchange; known maps
	// endpoint hashes to the endpoints this proxy picked (to place other
	// proxies' sends).
	out   outbox
	known sync.Map
}

// estimates are the engine speeds the model prices with.
type estimates struct {
	// prefillToken is seconds of prefill per uncached prompt token.
	prefillToken float64
	// stepBase, stepPerSeq and stepPerCtx: a decode step takes stepBase +
	// stepPerSeq × running sequences + stepPerCtx × their context tokens
	// (seconds).
	stepBase, stepPerSeq, stepPerCtx float64
	// output is the expected output tokens of a request that does not say.
	output float64
}

func defaultEstimates() estimates {
	return estimates{prefillToken: 0.25e-3, stepBase: 11e-3, stepPerSeq: 0.45e-3, stepPerCtx: 0.4e-6, output: 256}
}

// NewCostModel returns a cost model with an own prefix index of size chain
// keys (DefaultChainIndexSize when ≤ 0).
func NewCostModel(size int) *CostModel {
	m := &CostModel{index: newChainIndex(size), lora: NewLoRAScorer(), est: defaultEstimates(),
		plan:           planParams{Window: 2 * time.Minute, Balance: 1.25, MinHomes: 3, Multi: true},
		affinityBlocks: 32, usePlan: true}
	m.plan.Held = m.index.holders
	m.x = readKnobs()
	m.usePlan = m.x.plan
	return m
}

// Terms are one candidate's inputs and cost terms in a pick (seconds; see
// CostModel).
type Terms struct {
	// Inputs: the scraped (or estimated) waiting and running requests,
	// KV use, the tokens of the prompt the candidate is believed to hold,
	// and whether its metrics were fresh.
	Waiting, Running, KVUsage float64
	CachedTokens              float64
	Fresh                     bool
	// Terms.
	Wait, Prefill, Decode, Harm, LoRA float64
	// Cost is the total the pick minimised.
	Cost float64
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
	anywhere := m.index.match(keys, c.Candidates, room, depth)
	// The plan's homes of the prompt's leading blocks hold what of the
	// prompt was sent anywhere.
	var homes []uint64
	if len(keys) > 0 && !c.IsAdapter() && m.plan.Balance > 0 && m.usePlan {
		k := keys[0]
		for _, x := range keys[1:] {
			if x.Blocks > m.affinityBlocks {
				break
			}
			k = x
		}
		_, homes = m.homes.home(c, k.Hash, m.index.idx.Contains(k.Hash), c.Candidates[0].Endpoint.Proxies(), m.plan)
		switch m.x.inject {
		case 0:
			anywhere = 0
		case 1:
			anywhere = k.Blocks
		default:
			anywhere = max(anywhere, k.Blocks)
		}
	}
	known := c.cachedTokens()
	prompt := float64(len(promptStart(c.Req.Body))) / charsPerToken
	c.prompt, c.output = prompt, m.est.output
	if mt := maxTokens(c.Req.Body); mt > 0 {
		c.output = float64(mt)
	}
	lora := c.scores[:n]
	m.lora.Score(c, lora)
	terms := c.terms[:n]
	// The prefix that exists somewhere: a non-home serving it holds a
	// copy its plan does not want (see displacement).
	var shared float64
	for i := range c.Candidates {
		d := float64(depth[i]) * BlockChars / charsPerToken
		if known != nil && known[i] >= 0 {
			d = float64(known[i])
		}
		shared = max(shared, min(d, prompt))
	}
	if homes != nil {
		shared = max(shared, float64(anywhere)*BlockChars/charsPerToken)
	}
	best := -1
	var ties uint64
	for i := range c.Candidates {
		cd := &c.Candidates[i]
		d := depth[i]
		if len(homes) > 0 && slices.Contains(homes, cd.Endpoint.Hash) {
			d = max(d, anywhere)
		}
		cached := float64(d) * BlockChars / charsPerToken
		if blocks > 0 && int(d) == blocks {
			cached = prompt // the whole prompt went there
		}
		if known != nil && known[i] >= 0 {
			cached = float64(known[i])
		}
		t := &terms[i]
		*t = Terms{CachedTokens: min(cached, prompt)}
		m.cost(c, cd, max(prompt-cached, 1), c.output, lora[i], t)
		if len(homes) > 0 && m.x.displace > 0 && !slices.Contains(homes, cd.Endpoint.Hash) {
			if m.x.dmode == 0 {
				t.Cost += m.x.displace * m.est.prefillToken * max(prompt-cached, 1)
			} else {
				t.Cost += m.x.displace * m.est.prefillToken * shared
			}
		}
		if m.x.tol == 0 {
			switch {
			case best < 0 || t.Cost < terms[best].Cost:
				best, ties = i, 1
			case t.Cost == terms[best].Cost:
				ties++
				if rand.Uint64N(ties) == 0 {
					best = i
				}
			}
		}
	}
	if m.x.tol > 0 {
		return m.pickNear(c, terms, keys)
	}
	return best
}

// pickNear picks among the candidates whose cost is within the tolerance
// of the cheapest the one the prompt's leading blocks rank first
// (rendezvous): proxies that see the same state pick the same endpoint
// for a new prefix instead of each its own random one.
func (m *CostModel) pickNear(c *Cycle, terms []Terms, keys []chainKey) int {
	lo := math.Inf(1)
	for i := range terms {
		lo = min(lo, terms[i].Cost)
	}
	limit := lo * (1 + m.x.tol)
	var k uint64
	if len(keys) > 0 {
		k = keys[0].Hash
		for _, x := range keys[1:] {
			if x.Blocks > m.affinityBlocks {
				break
			}
			k = x.Hash
		}
	} else {
		k = rand.Uint64()
	}
	best, bestW := -1, uint64(0)
	for i := range terms {
		if terms[i].Cost > limit {
			continue
		}
		if w := mix(k ^ c.Candidates[i].Endpoint.Hash); best < 0 || w > bestW {
			best, bestW = i, w
		}
	}
	return best
}

// cost prices the request on one candidate into t.
func (m *CostModel) cost(c *Cycle, cd *Candidate, uncached, out, lora float64, t *Terms) {
	e := &m.est
	var waiting, running, kv, ctx float64
	t.Fresh = cd.Fresh
	known := cd.Fresh || !c.AnyFresh
	switch {
	case cd.Fresh:
		waiting, running, kv = cd.Metrics.Waiting, cd.Metrics.Running, cd.Metrics.KVCacheUsage
		// Requests sent since the scrape queue behind the waiting ones,
		// or join the batch when nothing waits.
		if unseen := cd.Queue - waiting; waiting >= 1 {
			waiting += unseen
		} else {
			running += unseen
		}
		ctx = kv * cd.Metrics.KVCapacity
	default:
		// No usable metrics: what this proxy has open there, spread over
		// the proxies (the others send about as much).
		running = float64(cd.Endpoint.InFlight() * int64(max(cd.Endpoint.Proxies(), 1)))
	}
	t.Waiting, t.Running, t.KVUsage = waiting, running, kv
	step := e.stepBase + e.stepPerSeq*(running+1) + e.stepPerCtx*ctx
	prefill := uncached * e.prefillToken
	// Prompts sent there and not prefilled yet go first (when requests
	// wait, the wait covers them).
	if m.x.backlog == 1 || m.x.backlog == 2 && waiting == 0 {
		prefill += cd.Endpoint.Backlog(c.Now.UnixNano(), 1/e.prefillToken) * e.prefillToken
	}
	if waiting > 0 {
		rate := cd.Endpoint.DoneRate()
		if floor := max(running, 1) / (e.output * step); rate < floor {
			// Too few completions seen to measure: a full batch turns
			// over once per request's decode.
			rate = floor
		}
		t.Wait = waiting / rate
	}
	if m.x.backlog == 3 {
		if b := cd.Endpoint.Backlog(c.Now.UnixNano(), 1/e.prefillToken) * e.prefillToken; b > t.Wait {
			t.Wait = b
		}
	}
	t.Prefill = prefill
	t.Decode = out * step
	behind := running
	if m.x.hw > 0 {
		behind += waiting
	}
	t.Harm = m.x.harm * (behind*prefill + running*out*e.stepPerSeq)
	if lora < 1 {
		// An adapter request where its adapter is not planned waits for a
		// slot and a load: up to a whole request's time for a busy slot.
		t.LoRA = (1 - lora) * (t.Decode + prefill + step*e.output)
	}
	t.Cost = t.Wait + t.Prefill + t.Decode + t.Harm + t.LoRA
	if !known {
		// Metrics missing while others have them: kept in rotation on its
		// own signals, but a known endpoint of equal cost goes first.
		t.Cost *= 1.25
	}
}

// record notes that the request went to candidate i.
func (m *CostModel) record(c *Cycle, i int) {
	ep := c.Candidates[i].Endpoint
	keys, _ := c.chain()
	// Everything the request allocates in the endpoint's KV cache pushes
	// older prefixes towards eviction; the other proxies write about as
	// much as this one.
	uncached := max(c.prompt-c.terms[i].CachedTokens, 1)
	ep.AddWritten(int64((uncached + c.output) * float64(max(ep.Proxies(), 1))))
	m.index.record(keys, ep, ep.Written())
	if !c.explain {
		m.out.add(ep.Hash, keys)
		if _, ok := m.known.Load(ep.Hash); !ok {
			m.known.Store(ep.Hash, ep)
		}
	}
	ep.AddBacklog(uncached*float64(max(ep.Proxies(), 1)), c.Now.UnixNano(), 1/m.est.prefillToken)
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
