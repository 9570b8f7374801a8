package picker

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// LoRAScorer places LoRA adapter requests where the adapter is, or will
// stay, resident in one of the server's max_lora slots. A server swaps idle
// adapters out to load others, so placement is good only if each server
// sees few enough adapters to keep them all loaded. Scores, first that
// applies:
//
//   - 1: the endpoint is in the adapter's home set and within the load
//     bound. Every proxy computes the same home sets without shared state:
//     the pool's adapters (those endpoints reported running or waiting in
//     the last 5 × Recent), in hash order, take turns picking the
//     endpoints of their rendezvous ranking that still have a slot free in
//     the plan, k each, where k = Σ max_lora / adapters (at least 1, at
//     most MaxHomes). An endpoint gets at most its max_lora homes (more
//     only when adapters outnumber slots), so homes balance load and keep
//     each server's adapters resident.
//   - 0.8: the endpoint is the adapter's overflow (the next-ranked one)
//     and within the bound: a busy adapter's excess goes to the same
//     endpoint from every proxy, so its demand grows its home set there.
//   - 0.7: the adapter is likely resident: it runs there (scraped), or this
//     proxy sent it there within Recent (idle adapters are not scraped).
//   - 0.5: a slot is free or holds an idle adapter, or the endpoint
//     reports no LoRA state yet.
//   - 0.2 / 0: every slot holds another adapter with running requests, so
//     the request would wait for one to drain (0.2 when the adapter already
//     waits there). This rule comes first: such a wait can starve.
//
// The load bound (queue + running ≤ LoadFactor × pool mean + Slack) moves
// a busy home's excess to the other homes first (they score 1), then to
// the overflow, then to endpoints holding the adapter. Models no endpoint
// reports as an adapter and this proxy never sent as one, and pools
// without LoRA state, score 1 everywhere, so the load scorers place them.
type LoRAScorer struct {
	// LoadFactor and Slack bound home affinity (defaults 1.25 and 4). The
	// load counts running requests too: adapter requests rarely queue,
	// they fill batches.
	LoadFactor float64
	Slack      float64
	// Recent is how long this proxy's own sends mark an adapter as resident
	// on an endpoint (default 2 s); an adapter some endpoint reported
	// within 5 × Recent counts as active in the home plan.
	Recent time.Duration
	// MaxHomes bounds an adapter's home set (default 2); beyond it, an
	// adapter's demand spreads through the load bound to its overflow.
	MaxHomes int

	mu   sync.Mutex
	sent map[string]*adapterSends
	// scraped is when an endpoint last reported each adapter running or
	// waiting (unix ns), as the plan saw it.
	scraped map[string]int64

	plan    atomic.Pointer[homePlan]
	planned every
}

// adapterSends are the endpoints (by hash) this proxy sent an adapter to
// and when (unix ns), newest first.
type adapterSends [4]struct {
	ep uint64
	at int64
}

// homePlan maps adapters to their endpoints (by hash).
type homePlan map[string]adapterPlan

// adapterPlan is an adapter's home endpoints and its overflow: the
// endpoint ranked next, where every proxy sends the adapter's requests
// when its homes are over the load bound.
type adapterPlan struct {
	homes    []uint64
	overflow uint64 // 0: none
}

// planEvery is how often the home plan is recomputed: the scrape interval,
// since scrapes are what changes it.
const planEvery = 50 * time.Millisecond

// NewLoRAScorer returns a LoRA scorer with the default bounds.
func NewLoRAScorer() *LoRAScorer {
	return &LoRAScorer{LoadFactor: 1.25, Slack: 4, Recent: 2 * time.Second, MaxHomes: 2, sent: make(map[string]*adapterSends), scraped: make(map[string]int64)}
}

// Name implements Scorer.
func (*LoRAScorer) Name() string { return "lora" }

// Prepare implements Preparer: a model this proxy sent as an adapter is
// one even while no endpoint reports it (idle adapters are not scraped).
func (s *LoRAScorer) Prepare(c *Cycle) {
	if c.adapter <= 0 && c.LoRA {
		if _, known := s.sends(c.Model()); known {
			c.adapter = 1
		}
	}
}

// Score implements Scorer.
func (s *LoRAScorer) Score(c *Cycle, out []float64) {
	cands := c.Candidates
	for i := range cands {
		out[i] = 1
	}
	if !c.LoRA {
		return
	}
	model := c.Model()
	sends, known := s.sends(model)
	if !c.IsAdapter() && !known {
		return
	}
	now := c.Now.UnixNano()
	if s.planned.claim(now, planEvery) {
		s.plan.Store(s.buildPlan(cands, now))
	}
	var ap adapterPlan
	if p := s.plan.Load(); p != nil {
		ap = (*p)[model]
	}
	bound := s.LoadFactor*meanLoad(cands) + s.Slack
	recent := now - int64(s.Recent)
	for i := range cands {
		cd := &cands[i]
		m := cd.Metrics
		running := m != nil && slices.Contains(m.RunningAdapters, model)
		switch {
		case m == nil || m.MaxLoRA == 0:
			out[i] = 0.5 // no LoRA state (not scraped yet): as good as a free slot
		case !running && len(m.RunningAdapters) >= m.MaxLoRA:
			// Every slot holds another adapter with running requests: the
			// request would wait until one drains, which under steady
			// traffic to those adapters may be never.
			out[i] = 0
			if slices.Contains(m.WaitingAdapters, model) {
				out[i] = 0.2 // one load there will serve the waiting ones too
			}
		case cd.Fresh && adapterLoad(cd) <= bound && slices.Contains(ap.homes, cd.Endpoint.Hash):
			out[i] = 1
		case cd.Fresh && adapterLoad(cd) <= bound && ap.overflow == cd.Endpoint.Hash:
			out[i] = 0.8
		case running || sentSince(&sends, cd.Endpoint.Hash, recent):
			out[i] = 0.7 // likely resident (an idle adapter is not scraped)
		default:
			out[i] = 0.5 // a slot is free or idle
		}
	}
}

// Record notes that the request went to ep (the scheduler calls it after a
// pick) when its model is an adapter.
func (s *LoRAScorer) Record(c *Cycle, ep *endpoints.Endpoint) {
	model := c.Model()
	if model == "" {
		return
	}
	now := c.Now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sent[model]
	if e == nil {
		if !c.IsAdapter() {
			return
		}
		e = new(adapterSends)
		s.sent[model] = e
	}
	// Move ep to the front, dropping its older entry or the oldest.
	j := len(e) - 1
	for i := range e {
		if e[i].ep == ep.Hash {
			j = i
			break
		}
	}
	copy(e[1:j+1], e[:j])
	e[0].ep, e[0].at = ep.Hash, now
}

// sends returns a copy of what this proxy sent model to, and whether it
// ever sent it as an adapter (and has not forgotten it).
func (s *LoRAScorer) sends(model string) (adapterSends, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.sent[model]; e != nil {
		return *e, true
	}
	return adapterSends{}, false
}

func sentSince(e *adapterSends, ep uint64, since int64) bool {
	for _, x := range e {
		if x.ep == ep && x.at >= since {
			return true
		}
	}
	return false
}

// planEndpoint is an endpoint as the home plan fills it.
type planEndpoint struct {
	hash       uint64
	slots      int // max_lora
	cap, homes int // homes it may take, homes taken
}

// buildPlan computes the home plan. Its adapters are those any endpoint
// reported running or waiting within 5 × Recent: scrapes are what every
// proxy sees alike (each proxy's own sends differ), and the window keeps
// an adapter that is idle for a moment from reshuffling the plan. Sends
// older than that are forgotten too.
func (s *LoRAScorer) buildPlan(cands []Candidate, now int64) *homePlan {
	var eps []planEndpoint
	slots := 0
	forget := now - 5*int64(s.Recent)
	s.mu.Lock()
	for i := range cands {
		m := cands[i].Metrics
		if m == nil || m.MaxLoRA == 0 {
			continue
		}
		eps = append(eps, planEndpoint{hash: cands[i].Endpoint.Hash, slots: m.MaxLoRA})
		slots += m.MaxLoRA
		for _, a := range m.RunningAdapters {
			s.scraped[a] = now
		}
		for _, a := range m.WaitingAdapters {
			s.scraped[a] = now
		}
	}
	adapters := make([]string, 0, len(s.scraped))
	for a, at := range s.scraped {
		if at < forget {
			delete(s.scraped, a)
			continue
		}
		adapters = append(adapters, a)
	}
	for a, e := range s.sent {
		if e[0].at < forget {
			delete(s.sent, a)
		}
	}
	s.mu.Unlock()
	plan := make(homePlan, len(adapters))
	if len(eps) == 0 || len(adapters) == 0 {
		return &plan
	}
	k := min(max(slots/len(adapters), 1), max(s.MaxHomes, 1), len(eps))
	// Each endpoint takes max_lora homes, more only when the adapters
	// need more homes than there are slots.
	spread := (len(adapters)*k + len(eps) - 1) / len(eps)
	for j := range eps {
		eps[j].cap = max(eps[j].slots, spread)
	}
	keyed := make([]namedHash, len(adapters))
	for i, a := range adapters {
		keyed[i] = namedHash{xxhash.Sum64String(a), a}
	}
	// Hash order: the same on every proxy, and unrelated to names.
	slices.SortFunc(keyed, func(a, b namedHash) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.name, b.name))
	})
	// Rounds: every adapter takes its first home before any takes its
	// second, so early adapters in hash order do not crowd out later ones.
	// Homes are indexes into eps while planning, hashes in the plan.
	backing := make([]int, len(adapters)*k)
	homes := make([][]int, len(keyed))
	for i := range keyed {
		homes[i] = backing[i*k : i*k : (i+1)*k]
	}
	for range k {
		for i, a := range keyed {
			j := rankFirst(eps, a.hash, homes[i], true)
			if j < 0 {
				j = unblock(homes, i, eps)
			}
			if j < 0 {
				j = rankFirst(eps, a.hash, homes[i], false) // slots exhausted: over plan
			}
			eps[j].homes++
			homes[i] = append(homes[i], j)
		}
	}
	hashes := make([]uint64, len(adapters)*k)
	for i, a := range keyed {
		ap := adapterPlan{homes: hashes[i*k : i*k : (i+1)*k]}
		for _, j := range homes[i] {
			ap.homes = append(ap.homes, eps[j].hash)
		}
		if j := rankFirst(eps, a.hash, homes[i], false); j >= 0 {
			ap.overflow = eps[j].hash
		}
		plan[a.name] = ap
	}
	return &plan
}

// rankFirst is the index of the endpoint ranked highest for adapter hash a
// (rendezvous) that is not in own (indexes into eps) and, when capped, has
// a home left to give; -1 when there is none.
func rankFirst(eps []planEndpoint, a uint64, own []int, capped bool) int {
	best, bestW := -1, uint64(0)
	for j := range eps {
		e := &eps[j]
		if (capped && e.homes >= e.cap) || slices.Contains(own, j) {
			continue
		}
		if w := mix(a ^ e.hash); best < 0 || w > bestW {
			best, bestW = j, w
		}
	}
	return best
}

// unblock resolves the dead end of exact packing, where every endpoint
// with a home left is already one of adapter i's: it moves another
// adapter's home g to such an endpoint f and returns g for adapter i, or
// -1 when no such move exists.
func unblock(homes [][]int, i int, eps []planEndpoint) int {
	own := homes[i]
	for _, f := range own {
		if eps[f].homes >= eps[f].cap {
			continue
		}
		for b, hs := range homes {
			if b == i || slices.Contains(hs, f) {
				continue
			}
			for x, g := range hs {
				if !slices.Contains(own, g) {
					hs[x] = f
					eps[f].homes++
					eps[g].homes--
					return g
				}
			}
		}
	}
	return -1
}

type namedHash struct {
	hash uint64
	name string
}

// adapterLoad is the load the home bound compares: queued plus running
// requests.
func adapterLoad(cd *Candidate) float64 { return cd.Queue + cd.Metrics.Running }

// meanLoad is the mean adapterLoad over fresh candidates.
func meanLoad(cands []Candidate) float64 {
	var sum float64
	n := 0
	for i := range cands {
		if cd := &cands[i]; cd.Fresh {
			sum += adapterLoad(cd)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
