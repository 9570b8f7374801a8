package picker

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/proto/pickerprofile"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// CostModel picks the candidate where a request is estimated to cost least:
// the request's own time to first token and decode, plus a share of the
// delay it adds to the requests already there. Per candidate, in seconds:
//
//	wait     = waiting requests ÷ the endpoint's completion rate where they
//	           wait for a slot (its batch is as large as any seen there, its
//	           free KV cache is short of a request, or an adapter waits:
//	           a saturated server admits one as another finishes), else
//	           waiting requests × the mean prefill of the latest sends there
//	           (they wait only for the prefill ahead of them); at least the
//	           time to prefill what the proxies sent there and are believed
//	           not done yet
//	prefill  = uncached prompt tokens × prefill time per token
//	decode   = output tokens × step time, the step growing with the batch
//	           (with this request) and the request's context tokens
//	harm     = HarmWeight × ((running + waiting) × prefill + running ×
//	           output tokens × the step time one more sequence adds): a
//	           prefill stalls every running sequence and delays every
//	           waiting one, a decode slows every step of the batch
//	cost     = wait + prefill + decode + harm
//	           (+ prefill again for a hot prefix sent off its planned homes)
//
// Uncached tokens come from the longest prefix the candidate is believed to
// hold: its PrefixSource (KV events) where it answers, else where this proxy
// and, through the fleet exchange, the gateway's other proxies sent the
// prompt's prefixes, as long as less than the free part of the endpoint's
// KV cache was written there since (LRU eviction would have reached it).
// Cache affinity is therefore a term of the cost, never an override: a hot
// prefix's home fills up until a cold prefill elsewhere is cheaper than
// waiting there, and then the prefix has a second home.
//
// Hot prefixes (the prompt's leading AffinityBlocks blocks, sent at least
// twice) are also planned: each gets ⌈its share of the pool's traffic ×
// endpoints⌉ homes, at most about Balance × the mean per endpoint, where it
// already is when the balance allows (prefixHomes). Sending a hot prefix
// off its homes costs its prefill once more: the copy it makes evicts
// other prefixes from that endpoint's cache, and the plan keeps each
// endpoint's set of prefixes small enough to stay cached.
type CostModel struct {
	index *chainIndex
	lora  *LoRAScorer
	est   estimates
	homes prefixHomes
	plan  planParams
	// affinityBlocks is how many leading blocks key the plan.
	affinityBlocks int32
	// harm is HarmWeight; tolerance the relative cost difference within
	// which candidates count as equal (then the prompt's rendezvous order
	// decides, the same on every proxy, rather than chance).
	harm, tolerance float64
	// out holds this proxy's sends for the fleet exchange; known maps
	// endpoint hashes to the endpoints this proxy picked (to place other
	// proxies' sends).
	out   outbox
	known sync.Map
	// exchangeAt is when the fleet exchange last brought another proxy's
	// send or scrape (unix ns; 0: never): whether prefilled records reach
	// the others (firstByte).
	exchangeAt atomic.Int64
	// cands is the candidate list known was last filled from, with each
	// endpoint's position in it (read-only once stored: concurrent picks
	// over the same list share it).
	cands atomic.Pointer[candIndex]
	// learn holds what outcomes taught (Observe).
	learn learned
	// clock is the scheduler's (Scheduler.SetClock): merged sends age by
	// it.
	clock func() time.Time
}

// estimates are the engine speeds the model prices with: an 8B model on
// one H100-class GPU by the published reference profile (prefill 0.25 ms
// per prompt token; decode ≈ 12 ms per step at batch 1, twice that at 16
// sequences of 1k context). Mostly their ratios steer picks, but their
// size meets what the proxy measures in real time (completion rates, the
// prefill backlog draining at prefillToken): with several proxies an
// engine 4× faster than these put shared-prefix TTFT p90 at 1.27× one
// proxy's in routesim. A profile sets them for other hardware.
type estimates struct {
	// prefillToken is seconds of prefill per uncached prompt token.
	prefillToken float64
	// stepBase, stepPerSeq and stepPerCtx: a decode step takes stepBase +
	// stepPerSeq × running sequences + stepPerCtx × their context tokens
	// (seconds).
	stepBase, stepPerSeq, stepPerCtx float64
	// output is the expected output tokens of a request that does not say,
	// until outcomes teach the pool's own (Observe).
	output float64
}

// NewCostModel returns a cost model with the contract's defaults
// (pickerprofile's cost plugin).
func NewCostModel() *CostModel {
	v, err := pickerprofile.Params(&snapshotPluginCost)
	if err != nil {
		panic(err) // the contract's own defaults always validate
	}
	return newCostModel(v)
}

// newCostModel builds the cost model of a validated profile entry.
func newCostModel(v pickerprofile.Values) *CostModel {
	m := &CostModel{
		index: newChainIndex(v.Count("index-size")),
		lora:  NewLoRAScorer(),
		est: estimates{
			prefillToken: v.Number("prefill-ms-per-1k-tokens") / 1e6,
			stepBase:     v.Number("step-ms") / 1e3,
			stepPerSeq:   v.Number("step-ms-per-sequence") / 1e3,
			stepPerCtx:   v.Number("step-ms-per-1k-context") / 1e6,
			output:       v.Number("output-tokens"),
		},
		plan: planParams{Window: v.Seconds("window-seconds"), Balance: v.Number("balance"),
			MinHomes: v.Count("min-homes"), Multi: true, AtOnce: true},
		affinityBlocks: int32(v.Count("affinity-blocks")),
		harm:           v.Number("harm-weight"),
		tolerance:      v.Number("tie-tolerance"),
	}
	m.plan.Held = m.index.holders
	m.clock = time.Now
	m.learn.init(m.est.output)
	return m
}

// Terms are one candidate's inputs and cost terms in a pick (seconds; see
// CostModel).
type Terms struct {
	// Inputs: the scraped (or estimated) waiting and running requests,
	// KV use, the tokens of the prompt the candidate is believed to hold,
	// whether its metrics were fresh and whether it is one of the prompt's
	// planned homes.
	Waiting      float64 `json:"waiting"`
	Running      float64 `json:"running"`
	KVUsage      float64 `json:"kvUsage"`
	CachedTokens float64 `json:"cachedTokens"`
	Fresh        bool    `json:"fresh"`
	Home         bool    `json:"home,omitempty"`
	// Terms.
	Wait     float64 `json:"wait"`
	Prefill  float64 `json:"prefill"`
	Decode   float64 `json:"decode"`
	Harm     float64 `json:"harm"`
	LoRA     float64 `json:"lora,omitempty"`
	Displace float64 `json:"displace,omitempty"`
	// Cost is the total the pick minimised.
	Cost float64 `json:"cost"`
}

// candIndex is a candidate list and each endpoint's position in it.
type candIndex struct {
	eps []*endpoints.Endpoint
	pos map[*endpoints.Endpoint]int32
}

// learnEndpoints notes the candidates' endpoints by hash (to place other
// proxies' sends) when the candidate set changed since the last pick, and
// returns the candidates' positions.
func (m *CostModel) learnEndpoints(c *Cycle) *candIndex {
	if prev := m.cands.Load(); prev != nil && len(prev.eps) == len(c.Candidates) {
		same := true
		for i := range c.Candidates {
			if prev.eps[i] != c.Candidates[i].Endpoint {
				same = false
				break
			}
		}
		if same {
			return prev
		}
	}
	ci := &candIndex{eps: make([]*endpoints.Endpoint, len(c.Candidates)), pos: make(map[*endpoints.Endpoint]int32, len(c.Candidates))}
	for i := range c.Candidates {
		ci.eps[i] = c.Candidates[i].Endpoint
		ci.pos[ci.eps[i]] = int32(i)
		m.known.Store(ci.eps[i].Hash, ci.eps[i])
	}
	m.cands.Store(ci)
	return ci
}

// choose returns the index of the cheapest candidate of c.
func (m *CostModel) choose(c *Cycle) int {
	ci := m.learnEndpoints(c)
	m.lora.Prepare(c)
	n := len(c.Candidates)
	keys, blocks := c.chain()
	free, room := c.free[:n], c.room[:n]
	for i := range c.Candidates {
		free[i], room[i] = math.Inf(1), math.Inf(1)
		if md := c.Candidates[i].Metrics; md != nil && md.KVCapacity > 0 {
			free[i] = (1 - min(max(md.KVCacheUsage, 0), 1)) * md.KVCapacity
			room[i] = md.KVCapacity
		}
	}
	depth, held := c.depth[:n], c.held[:n]
	m.index.match(keys, c.Candidates, free, room, depth, held, ci.pos)
	var homes []uint64
	if k, ok := m.affinityKey(keys); ok && !c.IsAdapter() && m.plan.Balance > 0 {
		_, homes = m.homes.home(c, k, m.index.contains(k), c.Candidates[0].Endpoint.Proxies(), m.plan)
	}
	known := c.cachedTokens()
	c.own.look(c)
	c.own.even = len(homes) > 0 && known == nil && c.own.blind(c, m.est.prefillToken)
	prompt := float64(len(promptStart(c.Req.Body))) / charsPerToken
	c.prompt, c.output = prompt, m.learn.get(&m.learn.output)
	c.outputGiven = false
	if mt := c.Req.MaxTokens; mt > 0 {
		c.output, c.outputGiven = float64(mt), true
	}
	lora := c.scores[:n]
	m.lora.Score(c, lora)
	terms := c.terms[:n]
	tok := m.est.prefillToken
	for i := range c.Candidates {
		cd := &c.Candidates[i]
		cached := held[i] * tokensPerBlock
		if blocks > 0 && int(depth[i]) == blocks {
			cached = prompt * held[i] / float64(blocks) // the whole prompt went there
		}
		// The index's guess, scaled by how far the endpoint's responses
		// bore such guesses out.
		guessed := min(cached, prompt)
		cached *= cd.Endpoint.CacheTrust()
		if known != nil && known[i] >= 0 {
			cached, guessed = float64(known[i]), 0
		}
		t := &terms[i]
		*t = Terms{CachedTokens: min(cached, prompt), Home: slices.Contains(homes, cd.Endpoint.Hash)}
		c.guessed[i] = guessed
		uncached := max(prompt-cached, 1)
		m.cost(c, cd, uncached, lora[i], t)
		if len(homes) > 0 && !t.Home {
			t.Displace = uncached * tok
			t.Cost += t.Displace
		}
		c.total[i] = t.Cost // what the admin API shows as the last score
	}
	return m.pickNear(c, terms, keys)
}

// affinityKey is the chain key of the prompt's leading blocks that keys
// the plan: the deepest of at most affinityBlocks blocks.
func (m *CostModel) affinityKey(keys []chainKey) (uint64, bool) {
	if len(keys) == 0 {
		return 0, false
	}
	k := keys[0].Hash
	for _, x := range keys[1:] {
		if x.Blocks > m.affinityBlocks {
			break
		}
		k = x.Hash
	}
	return k, true
}

// pickNear returns the cheapest candidate; among those within the
// tolerance of the cheapest, the one the prompt's leading blocks rank first
// (rendezvous), so that proxies that see the same state pick the same
// endpoint for a new prefix instead of each its own; prompts without a
// block go to a random one of them.
func (m *CostModel) pickNear(c *Cycle, terms []Terms, keys []chainKey) int {
	lo := math.Inf(1)
	for i := range terms {
		lo = min(lo, terms[i].Cost)
	}
	limit := lo + math.Abs(lo)*m.tolerance
	k, ok := m.affinityKey(keys)
	if !ok {
		k = uint64n(c.rng, math.MaxUint64)
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

// survival is the chance that a prefix sent to an endpoint is still in
// its cache after written tokens were written there since: certain while
// less than the cache's free part (free tokens) was written, none once a
// whole cache (capacity) was, and falling linearly between. A request's
// blocks are in use while it runs and then wait in the free part, which
// new blocks evict oldest first; how much of the cache was free when the
// request ended, and how much was written while it ran, the proxy does
// not see. Counting a send as cached until a whole cache was written
// (and not at all after) left 13 % of picks in routesim's kv-pressure
// expecting a hit that had been evicted — on a busy replica, whose
// batch then stalled for the prefill — and the free part alone forgot
// every hot prefix of a busy replica while its requests still held it
// (saturated shared-prefix throughput 2,350 → 1,500 tokens/s).
func survival(written, free, capacity float64) float64 {
	switch {
	case written >= capacity:
		return 0
	case written <= free:
		return 1
	}
	return (capacity - written) / (capacity - free)
}

// admitsOnlyOnDone reports whether the requests waiting on a candidate
// wait for running ones to finish: its batch is as large as any seen there
// (the server's cap, as far as anyone knows; until a larger batch has
// been seen, every queue counts as one), its free KV cache holds less than
// a request of need tokens, or a waiting request needs an adapter slot.
// Otherwise they wait only for the prefill ahead of them: a server admits
// as many as its step's token budget allows, and a long prompt admitted
// before them takes the budget for a few steps. Pricing that as a whole
// decode sent prompts off their cached home whenever a long prefill ran
// there (routesim shared-prefix, 1 proxy, medians of 15 seeds: TTFT p90
// 0.89 s, 0.40 s with this; requests that missed their prefix 8.0 %,
// 7.0 % over 8 seeds).
//
// Before any scrape has shown a running batch the cap is unknown, not
// zero: a replica's first step, which prefills the first prompts of a
// burst, ends long after they arrived, and until it does the server
// reports them all waiting and none running. Taken for a cap of zero,
// that replica admitted one request per completion (12 waiting priced at
// 41 s), and a burst's prompt groups went to a second replica cold
// (routesim, saturated shared prefixes with the users' first requests
// 0.5 ms apart, 1 proxy, 8 seeds: TTFT p90 16.6 s, 12.3 s with this; 2 ms
// apart, 4 proxies: 17.3 → 12.5 s; two traced seeds put each prompt
// group on 2.0 replicas in the burst). So where the proxies' sends say
// what waits, the queue waits for the prefill ahead of it until a batch
// is seen (a server that exports no running count stays so); a queue of
// prompts no proxy is known to have sent still waits for completions.
func admitsOnlyOnDone(cd *Candidate, running, kv, need float64) bool {
	seen := cd.Endpoint.BatchSeen()
	switch {
	case len(cd.Metrics.WaitingAdapters) > 0,
		seen >= 1 && running >= seen,
		seen < 1 && cd.Endpoint.SendPrefill() == 0:
		return true
	}
	if capTokens := cd.Metrics.KVCapacity; capTokens > 0 {
		return (1-kv)*capTokens < need
	}
	return kv >= 0.9
}

// cost prices the request on one candidate into t.
func (m *CostModel) cost(c *Cycle, cd *Candidate, uncached, lora float64, t *Terms) {
	e := &m.est
	var waiting, running, kv float64
	t.Fresh = cd.Fresh
	known := cd.Fresh || !c.AnyFresh
	switch {
	case cd.Fresh:
		waiting, running, kv = cd.Metrics.Waiting, cd.Metrics.Running, cd.Metrics.KVCacheUsage
		// Requests sent since the scrape queue behind the waiting ones,
		// or join the batch when nothing waits.
		unseen := c.own.unseen(cd, cd.Queue-waiting)
		if waiting >= 1 {
			waiting += unseen
		} else {
			running += unseen
		}
	default:
		// No usable metrics: what this proxy has open there, spread over
		// the proxies (the others send about as much).
		running = c.own.inFlight(cd) * float64(max(cd.Endpoint.Proxies(), 1))
	}
	t.Waiting, t.Running, t.KVUsage = waiting, running, kv
	// The request attends its own context at every step; the batch's
	// context is not priced per candidate: KV use is a poor proxy for it
	// (a shared prefix is stored once and attended by every sequence) and
	// pricing it pushed requests off the replicas holding their prefix
	// (shared-prefix TTFT p90 0.34 s → 1.2 s in routesim).
	step := e.stepBase + e.stepPerSeq*(running+1) + e.stepPerCtx*(c.prompt+c.output/2)
	tok := e.prefillToken
	switch {
	case waiting <= 0:
	case admitsOnlyOnDone(cd, running, kv, c.prompt+c.output):
		rate := cd.Endpoint.DoneRate()
		if floor := max(running, 1) / (c.output * step); rate < floor {
			// Too few completions seen to measure: a full batch turns
			// over once per request's decode.
			rate = floor
		}
		t.Wait = waiting / rate
	default:
		t.Wait = waiting * cd.Endpoint.SendPrefill() * tok
	}
	// What this proxy sent and believes not prefilled yet goes first.
	t.Wait = max(t.Wait, c.own.backlog(c, cd, 1/tok)*tok)
	t.Prefill = uncached * tok
	t.Decode = c.output * step
	t.Harm = m.harm * ((running+waiting)*t.Prefill + running*c.output*e.stepPerSeq)
	if lora < 1 {
		// An adapter request where its adapter is not planned waits for a
		// slot and a load: up to a whole request's time for a busy slot.
		// And it costs that twice, like a hot prefix sent off its homes:
		// the adapter it loads evicts another, whose next request pays
		// the same. (Pricing only its own wait left 88 % of requests on a
		// replica with their adapter loaded in the LoRA benchmark, 91–92 %
		// with both, TTFT p90 unchanged.)
		t.LoRA = 2 * (1 - lora) * (t.Decode + t.Prefill + step*c.output)
	}
	t.Cost = t.Wait + t.Prefill + t.Decode + t.Harm + t.LoRA
	if !known {
		// Metrics missing while others have them: kept in rotation on its
		// own signals, but a known endpoint of equal cost goes first.
		t.Cost *= staleFactor
	}
}

// staleFactor down-weights an endpoint priced on the proxy's own counts
// (its metrics are missing, stale or invalid) against ones with metrics:
// it stays in rotation and takes most of its share, but an endpoint that
// reports its load wins a close call.
const staleFactor = 1.1

// record notes that the request went to candidate i.
func (m *CostModel) record(c *Cycle, i int) {
	ep := c.Candidates[i].Endpoint
	keys, _ := c.chain()
	t := &c.terms[i]
	uncached := max(c.prompt-t.CachedTokens, 1)
	// Everything the request allocates in the endpoint's KV cache pushes
	// older prefixes towards eviction. The other proxies write about as
	// much there as this one, unless the fleet exchange brings their
	// sends (MergeSends counts those; see ownLoad.look). Its prompt
	// queues for prefill: the backlog counts it once — the others' sends
	// join the backlog as the exchange brings them, and counting them as
	// copies of this proxy's picks made each proxy shun its own recent
	// endpoints (with 4 proxies, TTFT p90 on shared prefixes 1.2 s
	// instead of 0.78 s in routesim).
	n := int64(max(ep.Proxies(), 1))
	if c.own.exchange {
		n = 1
	}
	ep.AddWritten(writes(uncached+c.output, ep) * n)
	ahead := ep.AddSend(uncached, c.Now.UnixNano(), c.Now.UnixNano(), 1/m.est.prefillToken)
	m.index.record(keys, ep, ep.Written())
	m.out.add(ep.Hash, keys, uncached, c.output, c.Now.UnixNano())
	c.Req.note = pickNote{ep: ep, outputGiven: c.outputGiven, sent: c.Now.UnixNano(), ahead: ahead, prefill: uncached}
	if c.prompt > 0 {
		c.Req.note.guessed = c.guessed[i] / c.prompt
		c.Req.note.matched = min(float64(c.depth[i])*tokensPerBlock/c.prompt, 1)
	}
	m.lora.Record(c, ep)
}

// writes is what one request writes into ep's KV cache, tokens at most
// the cache's size: a request holds no more than the whole cache, so no
// single send (a client's huge max_tokens, a prompt the server refuses,
// another proxy's report) counts as more than one cache of writes.
func writes(tokens float64, ep *endpoints.Endpoint) int64 {
	if !(tokens > 0) {
		return 0
	}
	if m := ep.Metrics(); m != nil && m.KVCapacity > 0 {
		tokens = min(tokens, m.KVCapacity)
	}
	return int64(min(tokens, 1<<40))
}

// snapshotPluginCost is a profile entry naming the cost plugin with no
// parameters (the contract's defaults).
var snapshotPluginCost = snapshotv1.PluginRef{Name: pickerprofile.Cost, Weight: 1}
