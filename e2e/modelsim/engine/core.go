package engine

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/infergate/infergate/proto/kvevents"
)

// Config sizes one engine. Zero fields take the defaults of DefaultConfig.
type Config struct {
	MaxNumBatchedTokens int // token budget per step, shared by decode and chunked prefill
	MaxNumSeqs          int // running sequences at most
	MaxWaiting          int // waiting queue bound; Submit fails with ErrQueueFull beyond it
	KVBlocks            int
	BlockSize           int
	MaxModelLen         int // prompt + output tokens at most
	MaxLoRAs            int // adapters resident at once
	Cost                CostModel
}

// DefaultConfig mirrors vLLM's defaults where they matter for routing. KVBlocks
// is far below what an 80 GB H100 holds for an 8B model (~27k blocks) on
// purpose: with 2,048 blocks (32k tokens) a full batch of long prompts creates
// visible KV pressure, which is what the gateway's KV scorer reacts to.
func DefaultConfig() Config {
	return Config{
		MaxNumBatchedTokens: 2048,
		MaxNumSeqs:          16,
		MaxWaiting:          1000,
		KVBlocks:            2048,
		BlockSize:           16,
		MaxModelLen:         8192,
		MaxLoRAs:            1,
		Cost:                DefaultCost(),
	}
}

// WithDefaults fills zero fields from DefaultConfig.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.MaxNumBatchedTokens <= 0 {
		c.MaxNumBatchedTokens = d.MaxNumBatchedTokens
	}
	if c.MaxNumSeqs <= 0 {
		c.MaxNumSeqs = d.MaxNumSeqs
	}
	if c.MaxWaiting <= 0 {
		c.MaxWaiting = d.MaxWaiting
	}
	if c.KVBlocks <= 0 {
		c.KVBlocks = d.KVBlocks
	}
	if c.BlockSize <= 0 {
		c.BlockSize = d.BlockSize
	}
	if c.MaxModelLen <= 0 {
		c.MaxModelLen = d.MaxModelLen
	}
	if c.MaxLoRAs <= 0 {
		c.MaxLoRAs = d.MaxLoRAs
	}
	if c.Cost == (CostModel{}) {
		c.Cost = d.Cost
	}
	return c
}

// Errors returned by Submit (or carried in Progress.Err).
var (
	ErrQueueFull = errors.New("waiting queue is full")
	ErrStopped   = errors.New("engine stopped")
	ErrCancelled = errors.New("request cancelled")
)

// TooLongError rejects a request that can never fit (vLLM answers 400).
type TooLongError struct{ Tokens, Limit int }

func (e *TooLongError) Error() string {
	return fmt.Sprintf("This model's maximum context length is %d tokens. However, you requested %d tokens.", e.Limit, e.Tokens)
}

// EventKind says what an Event reports.
type EventKind int

// Event kinds, observed once per step after the step's simulated end.
const (
	EvQueued      EventKind = iota // first admission: Dur = queue time
	EvPrefixQuery                  // admission: N = prompt tokens queried, M = tokens hit
	EvPromptDone                   // prefill finished: N = prompt tokens
	EvFirstToken                   // Dur = time to first token
	EvToken                        // a later token: Dur = inter-token latency
	EvFinished                     // Dur = end-to-end latency, First = TTFT, N = prompt, M = generated
	EvPreempted
	// EvAdapterAdmitted: a LoRA request's first admission; N = 1 when its
	// adapter had to be loaded (0: it was resident), M = 1 when the load
	// evicted another adapter.
	EvAdapterAdmitted
)

// Event is one observation for metrics.
type Event struct {
	Kind  EventKind
	Dur   time.Duration
	First time.Duration
	N, M  int
}

// StepResult describes one planned step. Its effects are already applied to
// the core's state; callers wait until End before publishing Touched requests.
type StepResult struct {
	Start, End time.Time
	Work       StepWork
	Touched    []*Request
	Events     []Event
	Scheduled  int
	// KV are the prefix-cache changes of the step (BlockStored for blocks
	// published, BlockRemoved for cached blocks evicted), when KV events
	// are on (Core.EnableKVEvents); they belong to the step's end.
	KV []kvevents.Event
}

// Stats is the engine's gauge state, plus LoRA placement counters since
// start.
type Stats struct {
	Waiting, Running int
	KVUsage          float64
	KVBlocks         int
	CachedBlocks     int
	RunningAdapters  []string
	WaitingAdapters  []string
	// ResidentAdapters are the adapters in LoRA slots (running or idle),
	// least recently used first.
	ResidentAdapters []string
	LoRA             LoRACounts
}

// LoRACounts is the ground truth of LoRA placement: how adapter requests
// found their adapter when first admitted. A request admitted again after
// preemption counts once, at its first admission.
type LoRACounts struct {
	Resident  int64 // adapter already in a slot: no load
	Loaded    int64 // adapter loaded for the request
	Evictions int64 // loads that evicted an idle adapter
}

// Core is the scheduler state machine: deterministic, single-goroutine and
// clock-free, so tests can drive it in simulated time without sleeping.
type Core struct {
	cfg     Config
	kv      *kvCache
	lora    *loraSlots
	waiting []*Request
	running []*Request
	counts  LoRACounts
}

// NewCore builds a core with cfg (zero fields defaulted).
func NewCore(cfg Config) *Core {
	cfg = cfg.WithDefaults()
	return &Core{cfg: cfg, kv: newKVCache(cfg.KVBlocks, cfg.BlockSize), lora: newLoRASlots(cfg.MaxLoRAs)}
}

// Config returns the effective configuration.
func (c *Core) Config() Config { return c.cfg }

// prepare tokenizes r and checks it can ever run.
func (c *Core) prepare(r *Request) error {
	r.promptLen = max(NumTokens(len(r.Prompt)), 1)
	if r.Tokens != nil {
		r.promptLen = max(len(r.Tokens), 1)
	}
	// Admission reserves room for prompt + 1 token even for prefill-only
	// requests, so that is the minimum that must fit.
	need := r.promptLen + max(r.MaxTokens, 1)
	if need > c.cfg.MaxModelLen {
		return &TooLongError{Tokens: need, Limit: c.cfg.MaxModelLen}
	}
	if limit := c.cfg.KVBlocks * c.cfg.BlockSize; need > limit {
		return &TooLongError{Tokens: need, Limit: limit}
	}
	if r.Tokens != nil {
		r.hashes = TokenBlockHashes(r.Tokens, c.cfg.BlockSize, r.Adapter)
	} else {
		r.hashes = BlockHashes(r.Prompt, c.cfg.BlockSize, r.Adapter)
	}
	if r.notify == nil {
		r.notify = make(chan struct{}, 1)
	}
	return nil
}

// Add queues a prepared request (see Engine.Submit for the checked path).
func (c *Core) Add(r *Request) error {
	if err := c.prepare(r); err != nil {
		return err
	}
	c.waiting = append(c.waiting, r)
	return nil
}

// Remove drops r wherever it is, returning its blocks.
func (c *Core) Remove(r *Request) {
	if i := slices.Index(c.waiting, r); i >= 0 {
		c.waiting = slices.Delete(c.waiting, i, i+1)
	}
	if i := slices.Index(c.running, r); i >= 0 {
		c.running = slices.Delete(c.running, i, i+1)
		c.kv.release(r.blocks)
		r.blocks = nil
		if r.Adapter != "" {
			c.lora.done(r.Adapter)
		}
	}
	r.cancelled = true
}

// CachedTokens is how many leading tokens of a request with this prompt
// and adapter would be cached when it is admitted, if it queued now: what
// the prefix cache holds, or what a request already waiting or running
// computes first (FIFO), whichever is longer — at most all but the
// prompt's last token. It is ground truth for routing oracles; a real
// server does not export it.
func (c *Core) CachedTokens(prompt []byte, adapter string) int {
	return c.cached(BlockHashes(prompt, c.cfg.BlockSize, adapter), max(NumTokens(len(prompt)), 1))
}

// CachedTokenIDs is CachedTokens for a prompt given as token ids
// (Request.Tokens).
func (c *Core) CachedTokenIDs(tokens []uint32, adapter string) int {
	return c.cached(TokenBlockHashes(tokens, c.cfg.BlockSize, adapter), max(len(tokens), 1))
}

func (c *Core) cached(hashes []uint64, promptLen int) int {
	hashes = hashes[:min(len(hashes), (promptLen-1)/c.cfg.BlockSize)]
	n := 0
	for _, h := range hashes {
		if _, ok := c.kv.cached[h]; !ok {
			break
		}
		n++
	}
	for _, q := range [2][]*Request{c.running, c.waiting} {
		for _, r := range q {
			m := 0
			for m < len(hashes) && m < len(r.hashes) && hashes[m] == r.hashes[m] {
				m++
			}
			n = max(n, m)
		}
	}
	return n * c.cfg.BlockSize
}

// Idle reports whether there is no work at all.
func (c *Core) Idle() bool { return len(c.waiting) == 0 && len(c.running) == 0 }

// Stats returns gauge values.
func (c *Core) Stats() Stats {
	s := Stats{
		Waiting:      len(c.waiting),
		Running:      len(c.running),
		KVUsage:      c.kv.usage(),
		KVBlocks:     len(c.kv.blocks),
		CachedBlocks: c.kv.cachedBlocks(),
	}
	s.RunningAdapters = adapters(c.running)
	s.WaitingAdapters = adapters(c.waiting)
	s.ResidentAdapters = slices.Clone(c.lora.resident)
	s.LoRA = c.counts
	return s
}

func adapters(rs []*Request) []string {
	var out []string
	for _, r := range rs {
		if r.Adapter != "" && !slices.Contains(out, r.Adapter) {
			out = append(out, r.Adapter)
		}
	}
	sort.Strings(out)
	return out
}

// JoinAdapters renders adapter names the way vLLM labels them.
func JoinAdapters(a []string) string { return strings.Join(a, ",") }

func (c *Core) preempt(r *Request) {
	i := slices.Index(c.running, r)
	c.running = slices.Delete(c.running, i, i+1)
	c.kv.release(r.blocks)
	r.blocks, r.kvTokens, r.registered = nil, 0, 0
	if r.Adapter != "" {
		c.lora.done(r.Adapter)
	}
	// Recompute preemption: back to the head of the queue.
	c.waiting = slices.Insert(c.waiting, 0, r)
}

// Step plans and applies one engine step starting at now with the given slow
// factor. The returned End is when its tokens become visible.
func (c *Core) Step(now time.Time, slow float64) StepResult {
	res := StepResult{Start: now}
	budget := c.cfg.MaxNumBatchedTokens
	type item struct {
		r *Request
		n int
	}
	var sched []item
	preempted := false

	// Running sequences first, in admission order (decode and unfinished prefill chunks).
	for i := 0; i < len(c.running) && budget > 0; i++ {
		r := c.running[i]
		n := min(r.total()-r.kvTokens, budget)
		for {
			blocks, ok := c.kv.grow(r.blocks, r.kvTokens+n)
			if ok {
				r.blocks = blocks
				break
			}
			victim := c.running[len(c.running)-1]
			c.preempt(victim)
			preempted = true
			res.Events = append(res.Events, Event{Kind: EvPreempted})
			if victim == r {
				r = nil
				break
			}
		}
		if r == nil {
			break
		}
		sched = append(sched, item{r, n})
		budget -= n
	}

	// Then admit waiting requests, FIFO except that a request whose adapter
	// cannot get a slot is skipped (as vLLM does). A request that does not fit
	// in KV blocks the queue: it waits for blocks to free up.
	if !preempted {
		for i := 0; i < len(c.waiting) && len(c.running) < c.cfg.MaxNumSeqs && budget > 0; {
			r := c.waiting[i]
			load := false
			if r.Adapter != "" {
				ok, l := c.lora.admit(r.Adapter)
				if !ok {
					i++
					continue
				}
				load = l
			}
			// vLLM always recomputes at least the last prompt token.
			hits := c.kv.lookup(r.hashes, (r.promptLen-1)/c.cfg.BlockSize)
			if !c.kv.canAdmit(hits, r.total()+1) {
				break
			}
			c.kv.take(hits)
			r.blocks = append(r.blocks[:0], hits...)
			r.registered = len(hits)
			r.kvTokens = len(hits) * c.cfg.BlockSize
			n := min(r.total()-r.kvTokens, budget)
			blocks, ok := c.kv.grow(r.blocks, r.kvTokens+n)
			if !ok { // cannot happen after canAdmit; keep the state consistent anyway
				c.kv.release(r.blocks)
				r.blocks, r.kvTokens, r.registered = nil, 0, 0
				break
			}
			r.blocks = blocks
			if r.Adapter != "" {
				evicted := c.lora.use(r.Adapter)
				if load {
					res.Work.LoRALoads++
				}
				if !r.admitted {
					res.Events = append(res.Events, c.countAdapter(r, load, evicted))
				}
			}
			res.Events = append(res.Events, Event{Kind: EvPrefixQuery, N: r.promptLen, M: r.kvTokens})
			if !r.admitted {
				r.admitted = true
				r.cached = r.kvTokens
				r.queuedFor = now.Sub(r.Arrival)
				res.Events = append(res.Events, Event{Kind: EvQueued, Dur: r.queuedFor})
			}
			c.waiting = slices.Delete(c.waiting, i, i+1)
			c.running = append(c.running, r)
			sched = append(sched, item{r, n})
			budget -= n
		}
	}

	res.Scheduled = len(sched)
	if len(sched) == 0 {
		res.End = now
		res.KV = c.kv.takeEvents()
		return res
	}
	for _, it := range sched {
		if it.r.generated > 0 && it.n == 1 && it.r.kvTokens == it.r.total()-1 {
			res.Work.DecodeSeqs++
		} else {
			res.Work.PrefillTokens += it.n
		}
		res.Work.ContextTokens += it.r.kvTokens + it.n
	}
	end := now.Add(c.cfg.Cost.Step(res.Work, slow))
	res.End = end

	for _, it := range sched {
		r := it.r
		wasPrefill := r.kvTokens < r.promptLen
		r.kvTokens += it.n
		c.registerBlocks(r)
		if r.kvTokens < r.total() {
			continue // still prefilling
		}
		if wasPrefill && r.generated == 0 {
			res.Events = append(res.Events, Event{Kind: EvPromptDone, N: r.promptLen})
		}
		if r.MaxTokens > 0 {
			r.generated++
			if r.generated == 1 {
				r.firstAt = end
				res.Events = append(res.Events, Event{Kind: EvFirstToken, Dur: end.Sub(r.Arrival)})
			} else {
				res.Events = append(res.Events, Event{Kind: EvToken, Dur: end.Sub(r.lastTokenAt)})
			}
			r.lastTokenAt = end
		} else {
			r.firstAt, r.lastTokenAt = end, end
		}
		if r.generated >= r.MaxTokens {
			r.finished = true
			c.finish(r)
			res.Events = append(res.Events, Event{Kind: EvFinished, Dur: end.Sub(r.Arrival), First: r.firstAt.Sub(r.Arrival), N: r.promptLen, M: r.generated})
		}
		res.Touched = append(res.Touched, r)
	}
	res.KV = c.kv.takeEvents()
	return res
}

// countAdapter records how r's adapter was found at r's first admission.
func (c *Core) countAdapter(r *Request, loaded bool, evicted string) Event {
	r.adapterLoaded, r.adapterEvicted = loaded, evicted
	ev := Event{Kind: EvAdapterAdmitted}
	if loaded {
		c.counts.Loaded++
		ev.N = 1
	} else {
		c.counts.Resident++
	}
	if evicted != "" {
		c.counts.Evictions++
		ev.M = 1
	}
	return ev
}

func (c *Core) finish(r *Request) {
	i := slices.Index(c.running, r)
	c.running = slices.Delete(c.running, i, i+1)
	c.kv.release(r.blocks)
	r.blocks = nil
	if r.Adapter != "" {
		c.lora.done(r.Adapter)
	}
}
