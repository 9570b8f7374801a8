package picker

import (
	"math/rand/v2"
	"time"
)

// PrefixSource is knowledge of what each candidate holds in its prefix
// cache that does not come from this proxy's own sends: model-server KV
// cache events (precise prefix routing) or, in benchmarks, the simulator's
// ground truth. The picker asks it once per pick.
type PrefixSource interface {
	// CachedTokens writes into out[i] how many leading tokens of req's
	// prompt cands[i] holds in its prefix cache, or -1 where the source
	// knows nothing of that endpoint (the picker then uses its own
	// estimate). It reports false when it cannot judge this request at all
	// (no tokenizer for the model, no events yet), and out is then unused.
	// len(out) == len(cands). It is called concurrently and must not keep
	// req, cands or out.
	CachedTokens(req *Request, cands []Candidate, out []int) bool
}

// SetPrefixSource attaches src to the scheduler (nil detaches it). Safe to
// call while picking; later picks use the new source.
func (s *Scheduler) SetPrefixSource(src PrefixSource) {
	if src == nil {
		s.source.Store(nil)
		return
	}
	s.source.Store(&src)
}

// SetClock replaces the scheduler's clock (time.Now), for simulations that
// run picks in virtual time. Call before the first pick.
func (s *Scheduler) SetClock(now func() time.Time) {
	s.now = now
	if s.cost != nil {
		s.cost.clock = now
	}
}

// SetRand makes the scheduler break ties (and pick a random candidate
// among equals for a prompt without blocks) with r instead of math/rand's
// global source, so that a simulation replays the same picks from the same
// seed. r is not safe for concurrent use: a scheduler given one must pick
// from one goroutine. Call before the first pick.
func (s *Scheduler) SetRand(r *rand.Rand) { s.rng = r }

// uint64n is a uniform number in [0, n) from r, or from math/rand's global
// source when r is nil.
func uint64n(r *rand.Rand, n uint64) uint64 {
	if r == nil {
		return rand.Uint64N(n)
	}
	return r.Uint64N(n)
}

// cachedTokens asks the scheduler's prefix source about c's candidates and
// returns their answers (nil when there is no source or it cannot judge).
func (c *Cycle) cachedTokens() []int {
	if c.sourced {
		return c.sourceOut
	}
	c.sourced = true
	c.sourceOut = nil
	if c.source == nil {
		return nil
	}
	out := c.sourceBuf[:0]
	for range c.Candidates {
		out = append(out, -1)
	}
	c.sourceBuf = out
	if (*c.source).CachedTokens(c.Req, c.Candidates, out) {
		c.sourceOut = out
	}
	return c.sourceOut
}
