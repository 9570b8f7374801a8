package picker

import (
	"math"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// PrefixScorer scores how much of the request's prompt an endpoint is
// expected to have in its prefix cache. Two sources, the larger wins:
//
//   - Rendezvous affinity, which every proxy computes identically without
//     shared state: the prompt's leading blocks (up to AffinityBlocks) hash
//     to a ranking of endpoints (highest-random-weight hashing over the
//     endpoint's address hash), and the best-ranked endpoint whose queue is
//     within LoadFactor × the pool's mean queue + Slack gets 1. The load bound moves a
//     hot prefix to its next-ranked endpoint — the same one on every proxy,
//     because they all see the same scraped loads.
//     Prefixes this proxy sends repeatedly (with several proxies: from
//     the first time, while few) are balanced over endpoints (Balance,
//     MinHomes): a hot prefix's first choice is its home in a plan that
//     caps how many hot prefixes one endpoint homes (see prefixHomes), not
//     its top rendezvous rank.
//     Requests for a LoRA adapter get no rendezvous affinity: LoRAScorer
//     places them by adapter, and a per-prompt binding would pull them off
//     their adapter's home endpoints.
//   - The proxy's own index of where it sent each prefix (block hash →
//     endpoints, LRU-bounded): matched blocks / prompt blocks. It remembers
//     spill-overs and deep prefixes (multi-turn chats) the rendezvous key
//     does not cover.
//
// The index records block positions 1, 2, 4, …, 256 and the prompt's last
// block rather than every block, so a pick does at most ~10 lookups however
// long the prompt; a match is credited at the deepest recorded position.
// AffinityBlocks is rounded down to a recorded position.
type PrefixScorer struct {
	// AffinityBlocks is how many leading blocks key the rendezvous ranking
	// (default 32 ≈ 512 tokens: deep enough that prompts sharing only a
	// generic preamble spread, short enough that a shared system prompt
	// keys alone). Prompts shorter than one block get no affinity.
	AffinityBlocks int
	// LoadFactor and Slack bound affinity: an endpoint whose waiting queue
	// exceeds LoadFactor × the mean queue + Slack is skipped (defaults 1.25
	// and 8). The bound looks at waiting requests, not running ones: a
	// replica with a full batch but a short queue still serves a cached
	// prefix sooner than a cold replica can prefill it.
	LoadFactor float64
	Slack      float64
	// Balance caps the hot prefixes (those this proxy sent at least
	// twice within Window) an endpoint homes at Balance × their mean per
	// endpoint, rounded up and at least MinHomes (defaults 1.25, 3, 2
	// minutes); 0 turns the plan off (plain rendezvous). Below a few
	// prefixes per endpoint balancing buys little — a replica's KV holds
	// several long prompts — while each change of the cap as prefixes
	// appear moves some of them, a cold prefill each.
	Balance  float64
	MinHomes int
	Window   time.Duration

	index *lru.Cache[uint64, entry]
	homes prefixHomes
}

// entry is the endpoints a block hash was last sent to, newest first.
type entry [4]*endpoints.Endpoint

// DefaultPrefixIndexSize is the number of block hashes a proxy remembers
// per pool (the reference keeps ~31k per pod; with sparse positions this
// covers far more prompts).
const DefaultPrefixIndexSize = 64 << 10

// NewPrefixScorer returns a prefix scorer with an index of size block
// hashes (DefaultPrefixIndexSize when ≤ 0).
func NewPrefixScorer(size int) *PrefixScorer {
	if size <= 0 {
		size = DefaultPrefixIndexSize
	}
	idx, err := lru.New[uint64, entry](size)
	if err != nil {
		panic(err) // only for size ≤ 0, excluded above
	}
	return &PrefixScorer{AffinityBlocks: 32, LoadFactor: 1.25, Slack: 8, Balance: 1.25, MinHomes: 3, Window: 2 * time.Minute, index: idx}
}

// Name implements Scorer.
func (*PrefixScorer) Name() string { return "prefix-cache" }

// Score implements Scorer.
func (s *PrefixScorer) Score(c *Cycle, out []float64) {
	keys, n := c.prefixKeys()
	for i := range out[:len(c.Candidates)] {
		out[i] = 0
	}
	if n == 0 {
		return
	}
	// A prefix source (KV events, an oracle) knows better than the own
	// index where it has an answer.
	known := c.cachedTokens()
	// Own index: deepest position first, so each endpoint gets its longest
	// match.
	for i := len(keys) - 1; i >= 0; i-- {
		e, ok := s.index.Peek(keys[i].Hash)
		if !ok {
			continue
		}
		for _, ep := range e {
			if ep == nil {
				break
			}
			seen := false
			for _, m := range c.matches {
				if m.ep == ep {
					seen = true
					break
				}
			}
			if !seen {
				c.matches = append(c.matches, prefixMatch{ep: ep, blocks: int32(keys[i].Blocks)})
			}
		}
	}
	// A few matching endpoints (the usual case) are compared directly;
	// many go through a map so the pass stays linear in candidates.
	switch {
	case len(c.matches) == 0:
	case len(c.matches) <= 8:
		for i := range c.Candidates {
			ep := c.Candidates[i].Endpoint
			for _, m := range c.matches {
				if m.ep == ep {
					out[i] = float64(m.blocks) / float64(n)
					break
				}
			}
		}
	default:
		for _, m := range c.matches {
			c.prefixOf[m.ep] = m.blocks
		}
		for i := range c.Candidates {
			if b, ok := c.prefixOf[c.Candidates[i].Endpoint]; ok {
				out[i] = float64(b) / float64(n)
			}
		}
	}
	if known != nil {
		// What the source knows replaces the guesses: the own index where
		// it knows nothing, no rendezvous affinity.
		tokens := float64(len(promptStart(c.Req.Body))) / charsPerToken
		for i, t := range known {
			if t >= 0 && tokens > 0 {
				out[i] = min(float64(t)/tokens, 1)
			}
		}
		return
	}
	// Adapter requests get no rendezvous affinity: LoRAScorer places them.
	if c.IsAdapter() {
		return
	}
	// The pool's choice gets full affinity and its runner-up half: when
	// the load scorers overrule the first, every proxy spills the prefix
	// to the same second replica instead of wherever is idlest for it.
	// Not for a hot prefix at its planned home: the home holds it cached
	// and runs its other requests, so its KV use and queue run higher than
	// a cold replica's, and with the runner-up at half a queue of two
	// would spill the prefix into a full prefill there — slower than the
	// wait, and its blocks evict the runner-up's own prefixes. A hot
	// prefix leaves its home at the load bound (the runner-up then ranks
	// first), or when queue and KV differences outweigh all affinity.
	if best, second, homed := s.affinity(c, keys); best >= 0 {
		out[best] = 1
		if second >= 0 && !homed {
			out[second] = max(out[second], 0.5)
		}
	}
}

// affinity returns the indexes of the two candidates the prompt's leading
// blocks are bound to first and second, or -1: the key is the deepest
// recorded prefix of at most AffinityBlocks blocks. A hot prefix's planned
// home ranks first (homed reports it is best); the others follow by
// whether the prefix fits the plan there (see homesPlan), then by
// rendezvous weight.
func (s *PrefixScorer) affinity(c *Cycle, keys []prefixKey) (best, second int, homed bool) {
	k := keys[0].Hash
	for _, pk := range keys[1:] {
		if pk.Blocks > s.AffinityBlocks {
			break
		}
		k = pk.Hash
	}
	var home uint64
	var plan *homesPlan
	if s.Balance > 0 {
		var homes []uint64
		plan, homes = s.homes.home(c, k, s.index.Contains(k), c.Candidates[0].Endpoint.Proxies(), s.planParams())
		if len(homes) > 0 {
			home = homes[0]
		}
	}
	bound := s.LoadFactor*c.MeanQueue + s.Slack
	best, second = -1, -1
	// Candidates rank by whether the prefix fits the plan there (the top
	// bit of the rank), then by weight; the home ranks above all.
	if plan != nil && !plan.full {
		plan = nil // everything fits
	}
	var bestW, secondW uint64
	for i := range c.Candidates {
		cd := &c.Candidates[i]
		if cd.Queue > bound || (c.AnyFresh && !cd.Fresh) {
			continue
		}
		h := cd.Endpoint.Hash
		w := mix(k ^ h)
		switch {
		case home != 0 && h == home:
			w = math.MaxUint64
		case plan == nil || plan.fits(i, h, w):
			w = w>>1 | 1<<63
		default:
			w >>= 1
		}
		switch {
		case best < 0 || w > bestW:
			second, secondW = best, bestW
			best, bestW = i, w
		case second < 0 || w > secondW:
			second, secondW = i, w
		}
	}
	return best, second, best >= 0 && c.Candidates[best].Endpoint.Hash == home
}

func (s *PrefixScorer) planParams() planParams {
	return planParams{Window: s.Window, Balance: s.Balance, MinHomes: s.MinHomes}
}

// mix is a 64-bit finaliser (splitmix64): rendezvous weights must be
// well spread even for related inputs.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Record notes that the request's prompt went to ep (the scheduler calls it
// after a pick).
func (s *PrefixScorer) Record(c *Cycle, ep *endpoints.Endpoint) {
	keys, _ := c.prefixKeys()
	for _, k := range keys {
		old, _ := s.index.Peek(k.Hash)
		if old[0] == ep {
			s.index.Get(k.Hash) // refresh recency only
			continue
		}
		next := entry{ep}
		j := 1
		for _, o := range old {
			if o != nil && o != ep && j < len(next) {
				next[j] = o
				j++
			}
		}
		s.index.Add(k.Hash, next)
	}
}
