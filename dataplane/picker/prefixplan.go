package picker

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// prefixHomes balances shared prefixes over endpoints. Plain rendezvous
// hashing puts a prefix on its highest-ranked endpoint whatever else lives
// there, so with tens of hot prefixes some endpoints home twice the mean
// (32 prefixes on 8 endpoints: the busiest gets 7 on average) — their
// queues grow and their KV cache evicts prefixes, and each eviction or
// spill costs a cold prefill of the whole prompt.
//
// The plan caps the hot prefixes an endpoint homes at
// max(MinHomes, ⌈Balance × prefixes / endpoints⌉) and places them by the
// unique stable matching of prefixes and endpoints under the rendezvous
// weights (each pair's weight is what both sides rank by): a prefix keeps
// its rendezvous choice unless that endpoint is full of prefixes that rank
// it higher. The matching depends only on the set of prefixes and
// endpoints, not on the order prefixes were seen, so proxies that see the
// same hot prefixes compute the same homes without shared state; a new
// prefix moves at most a short chain of others.
//
// A prefix is hot once this proxy sends it a second time (its affinity key
// is in the own index) and stays so until unused for Window; prompts that
// are never repeated never enter the plan, so they cost no rebuilds.
//
// With N > 1 proxies each sees about 1/N of a prefix's requests, so a
// prefix the pool has sent many times may be new to this proxy: waiting
// for its second request here puts it in this proxy's plan N times later
// than in one proxy's, and until every proxy has it their plans differ
// and move prefixes between replicas (each move a cold prefill). So with
// N > 1 a prefix sent once also joins the plan (a tentative key), as long
// as the tentative keys are no more than max(hot keys, tentativePerEndpoint
// × endpoints): beyond that most of them are unique prompts, which would
// crowd the shared prefixes out of the plan, and only hot keys count.
type prefixHomes struct {
	mu sync.Mutex
	// hot maps affinity keys to when this proxy last sent them (unix ns).
	hot map[uint64]int64
	// uses counts each key's sends, decayed with a time constant of a
	// quarter window as of its last use (hot, once); total counts every
	// request of the pool the same way as of totalAt. A key's share of
	// the pool's traffic, uses/total, sizes its home set (multi-home
	// plans only).
	uses    map[uint64]float64
	total   float64
	totalAt int64
	// once maps the keys this proxy sent once, with N > 1 proxies, to
	// when; tentative reports whether the current plan includes them.
	once      map[uint64]int64
	tentative bool
	// due is when the plan needs a rebuild (unix ns): at once when a key
	// joined hot since the last build, else when the oldest hot key
	// expires (math.MaxInt64: never).
	due int64

	// fleet are the pool's keys as all its proxies report them (see
	// FleetKeys; nil without a control plane that aggregates them).
	fleet *FleetKeys

	plan  atomic.Pointer[homesPlan]
	built every
}

// homesPlan maps hot affinity keys to their home endpoint's hash, and
// says which endpoints a prefix that is not hot yet fits: eps are the
// endpoints the plan was built over (hashes, in candidate order) and a key
// fits eps[j] when its weight there is above fitW[j] — 0 when eps[j] has
// room for one more hot prefix, else the lowest weight it holds. A new
// prefix goes where the plan would put it once hot, rather than to an
// endpoint that is full and would hand it on (a second cold prefill).
type homesPlan struct {
	// homes lists each key's home endpoints (hashes), best ranked first.
	homes map[uint64][]uint64
	eps   []uint64
	fitW  []uint64
	// full reports that some endpoint has no room (fitW not all 0).
	full bool
}

// fits reports whether a prefix of weight w on candidate i (endpoint
// hash h) fits the plan there; endpoints the plan does not know fit.
// Only for a full plan.
func (pl *homesPlan) fits(i int, h, w uint64) bool {
	return i >= len(pl.eps) || pl.eps[i] != h || w > pl.fitW[i]
}

// replanEvery is how often a multi-home plan is rebuilt while it has
// keys, so that home sets follow the keys' shares of the traffic.
const replanEvery = time.Second

// maxHotPrefixes bounds the plan: beyond it the least recently used keys
// drop out (they keep plain rendezvous affinity). It bounds the tentative
// keys too, which are then far over tentativeOK's limit anyway. It is the
// fleet-key limit, so the plan holds as many keys as the control plane
// serves for a pool.
const maxHotPrefixes = fleetv1.MaxKeysPerPool

// tentativePerEndpoint is how many tentative keys per endpoint the plan
// takes even before as many keys are hot: a replica's KV cache holds a few
// long prefixes, so a pool whose proxies each see a few per endpoint is
// one of shared prefixes.
const tentativePerEndpoint = 4

// tentativeOK reports whether the plan takes the tentative keys.
func tentativeOK(once, hot, eps int) bool { return once <= max(hot, tentativePerEndpoint*eps) }

// planParams are the plan's parameters (PrefixScorer, CostModel).
type planParams struct {
	// Window: keys unused this long leave the plan.
	Window time.Duration
	// Balance and MinHomes cap the homes per endpoint at
	// max(MinHomes, ⌈Balance × homes / endpoints⌉); Balance 0 turns the
	// plan off.
	Balance  float64
	MinHomes int
	// Multi gives a key as many homes as its share of the pool's traffic
	// needs (⌈share × endpoints⌉) instead of one.
	Multi bool
	// AtOnce: with several proxies, a key new to a small plan gets its
	// homes at once rather than at the next rebuild (see
	// homesPlan.lacks).
	AtOnce bool
	// Held, when set, appends to out the endpoints (hashes) that hold key
	// now: the plan homes a prefix where it already is when the balance
	// allows, rather than moving it (a cold prefill) to its rendezvous
	// choice.
	Held func(key uint64, out []uint64) []uint64
}

// home returns the plan and the planned homes (endpoint hashes, best
// first) of key k, marking k used at now; nil when k is not in the plan. sent reports
// whether this proxy sent the key before, and proxies is the number of
// proxies. The plan is rebuilt over cands at most every planEvery when a
// key joined (or the tentative keys stop or start counting), and when the
// oldest key expires.
func (h *prefixHomes) home(c *Cycle, k uint64, sent bool, proxies int, p planParams) (*homesPlan, []uint64) {
	now := c.Now.UnixNano()
	if c.explain {
		// Read the plan as it is: an explanation counts no use.
		pl := h.plan.Load()
		if pl == nil {
			return nil, nil
		}
		return pl, pl.homes[k]
	}
	if p.Multi {
		h.mu.Lock()
		h.total = decayed(h.total, h.totalAt, now, p.Window) + 1
		h.totalAt = now
		h.mu.Unlock()
	}
	if !sent && proxies <= 1 {
		return h.plan.Load(), nil
	}
	h.mu.Lock()
	if h.hot == nil {
		h.hot, h.once, h.uses = make(map[uint64]int64), make(map[uint64]int64), make(map[uint64]float64)
	}
	if p.Multi {
		last, ok := h.hot[k]
		if !ok {
			last = h.once[k]
		}
		h.uses[k] = decayed(h.uses[k], last, now, p.Window) + 1
	}
	_, inHot := h.hot[k]
	_, inOnce := h.once[k]
	switch {
	case sent:
		// A tentative key the plan counts is in it already.
		if !inHot && !(inOnce && h.tentative) {
			h.due = math.MinInt64
		}
		delete(h.once, k)
		h.hot[k] = now
	case inHot:
		// Sent before, since evicted from the own index: still hot.
		h.hot[k] = now
	case inOnce:
		h.once[k] = now
	case len(h.once) < maxHotPrefixes:
		h.once[k] = now
		if h.tentative || tentativeOK(len(h.once), len(h.hot), len(c.Candidates)) {
			h.due = math.MinInt64
		}
	}
	rebuild := now >= h.due
	h.mu.Unlock()
	pl := h.plan.Load()
	// The endpoints changed since the plan was built: its homes may name
	// endpoints that are gone and leave new ones empty.
	rebuild = rebuild || (pl != nil && !pl.over(c.Candidates))
	if rebuild && (h.built.claim(now, planEvery) || (p.AtOnce && proxies > 1 && pl.lacks(k, len(c.Candidates)))) {
		pl = h.build(c.Candidates, now, p, proxies)
		h.plan.Store(pl)
	}
	if pl == nil {
		return nil, nil
	}
	return pl, pl.homes[k]
}

// decayed is a count last updated at (unix ns) as of now, decaying with a
// time constant of a quarter window.
func decayed(v float64, at, now int64, window time.Duration) float64 {
	if v == 0 || now <= at {
		return v
	}
	return v * math.Exp(-float64(now-at)/(float64(window)/4))
}

// lacks reports whether key k should get its homes from a rebuild now,
// before planEvery has passed: the plan does not have it and is small
// (at most tentativePerEndpoint keys per endpoint, so a rebuild costs
// little). With several proxies, when a burst of new prefixes arrives,
// many within one planEvery, each proxy's first send of a prefix decides
// where its first copy lands, and the plan is what the proxies agree on:
// a prefix the plan lacks is placed by each proxy's own load, which
// differs between proxies (routesim, saturated shared prefixes, 4
// proxies: 192 requests at once spread each prompt group over 2.5
// replicas). A large plan is rebuilt at most every planEvery, as before;
// so is every plan of a single proxy, which has no one to agree with (at
// once, its prefixes moved as each new one joined: routesim, saturated
// shared prefixes, 1 proxy, 15 seeds: TTFT p90 12.22 → 12.45 s).
func (pl *homesPlan) lacks(k uint64, eps int) bool {
	if pl == nil {
		return false
	}
	_, ok := pl.homes[k]
	return !ok && len(pl.homes) < tentativePerEndpoint*eps
}

// over reports whether the plan was built over exactly these candidates.
func (pl *homesPlan) over(cands []Candidate) bool {
	if len(pl.eps) != len(cands) {
		return false
	}
	for i := range cands {
		if cands[i].Endpoint.Hash != pl.eps[i] {
			return false
		}
	}
	return true
}

// build drops expired keys and matches the rest to the candidates: the
// hot keys, own and the fleet's, and the tentative ones while tentativeOK.
// The fleet's tentative keys count only with several proxies, as the own
// ones do.
func (h *prefixHomes) build(cands []Candidate, now int64, p planParams, proxies int) *homesPlan {
	h.mu.Lock()
	if len(h.hot) > maxHotPrefixes {
		// Rare: keep the most recently used. Before expire, so that the
		// oldest use it returns is one of the keys kept.
		keys := slices.Collect(maps.Keys(h.hot))
		sortByRecency(keys, h.hot)
		for _, k := range keys[maxHotPrefixes:] {
			delete(h.hot, k)
		}
	}
	forget := now - int64(p.Window)
	oldest := expire(h.hot, forget, 0)
	oldest = expire(h.once, forget, oldest)
	for k := range h.uses {
		if _, ok := h.hot[k]; !ok {
			if _, ok := h.once[k]; !ok {
				delete(h.uses, k)
			}
		}
	}
	keys, once := h.keys(proxies)
	h.tentative = tentativeOK(len(once), len(keys), len(cands))
	if h.tentative {
		keys = append(keys, once...)
	}
	h.due = math.MaxInt64
	if oldest != 0 {
		h.due = oldest + int64(p.Window)
	}
	if p.Multi && len(keys) > 0 {
		// Shares drift with the traffic: homes follow them.
		h.due = min(h.due, now+int64(replanEvery))
	}
	want := make([]int, len(keys))
	homes := 0
	total := decayed(h.total, h.totalAt, now, p.Window)
	for i, k := range keys {
		want[i] = 1
		if p.Multi && total > 0 {
			last, ok := h.hot[k]
			if !ok {
				last = h.once[k]
			}
			share := decayed(h.uses[k], last, now, p.Window) / total
			want[i] = min(max(int(math.Ceil(share*float64(len(cands))-1e-9)), 1), len(cands))
		}
		homes += want[i]
	}
	h.mu.Unlock()
	eps := make([]uint64, len(cands))
	for i := range cands {
		eps[i] = cands[i].Endpoint.Hash
	}
	var held map[uint64][]uint64
	if p.Held != nil {
		held = make(map[uint64][]uint64)
		for _, k := range keys {
			if hs := p.Held(k, nil); len(hs) > 0 {
				held[k] = hs
			}
		}
	}
	plan, holds := matchHomes(keys, want, eps, homeCap(homes, len(eps), p.Balance, p.MinHomes), held)
	// Room for a new prefix: the capacity with one more hot prefix.
	next := homeCap(homes+1, len(eps), p.Balance, p.MinHomes)
	fitW := make([]uint64, len(eps))
	full := false
	for j, hs := range holds {
		if len(hs) < next {
			continue
		}
		full = true
		fitW[j] = math.MaxUint64
		for _, x := range hs {
			fitW[j] = min(fitW[j], x)
		}
	}
	return &homesPlan{homes: plan, eps: eps, fitW: fitW, full: full}
}

// keys returns the hot keys and the tentative ones (not hot), own and the
// fleet's, each once; the fleet's tentative keys only with several
// proxies. The caller holds mu.
func (h *prefixHomes) keys(proxies int) (hot, once []uint64) {
	f := h.fleet
	if f == nil {
		f = &FleetKeys{}
	}
	seen := make(map[uint64]bool, len(h.hot)+len(f.Hot)+len(h.once))
	add := func(dst []uint64, k uint64) []uint64 {
		if seen[k] {
			return dst
		}
		seen[k] = true
		return append(dst, k)
	}
	for k := range h.hot {
		hot = add(hot, k)
	}
	for _, k := range f.Hot {
		hot = add(hot, k)
	}
	for k := range h.once {
		once = add(once, k)
	}
	if proxies > 1 {
		for _, k := range f.Once {
			once = add(once, k)
		}
	}
	return hot, once
}

// homeCap is how many hot prefixes an endpoint may home: the balance
// factor's share, at least minHomes, and enough for all of them.
func homeCap(keys, eps int, balance float64, minHomes int) int {
	if eps == 0 {
		return 0
	}
	c := max(int(math.Ceil(balance*float64(keys)/float64(eps))), minHomes, 1)
	return max(c, (keys+eps-1)/eps)
}

// matchHomes is the stable matching of keys to endpoints (by hash), key
// i taking want[i] distinct endpoints and each endpoint at most capacity
// keys, both sides ranking pairs by the rendezvous weight mix(key ^
// endpoint), endpoints that hold the key (holders) above all others. With one weight per pair the stable matching is unique — the
// greedy one taking pairs by descending weight — and deferred acceptance
// finds it without sorting keys × endpoints pairs: each key proposes to
// its endpoints in descending weight until it holds want of them, and a
// full endpoint keeps the heaviest. Homes are listed heaviest first. It
// also returns the weights each endpoint holds.
func matchHomes(keys []uint64, want []int, eps []uint64, capacity int, holders map[uint64][]uint64) (map[uint64][]uint64, [][]uint64) {
	// Pairs rank by rendezvous weight, endpoints holding the key first
	// (the top bit); weights reports the plain rendezvous weights, which
	// is what callers compare a new prefix's weight with.
	weight := func(k, e uint64) uint64 {
		w := mix(k ^ e)
		if len(holders) == 0 {
			return w
		}
		w >>= 1
		if slices.Contains(holders[k], e) {
			w |= 1 << 63
		}
		return w
	}
	plan := make(map[uint64][]uint64, len(keys))
	weights := make([][]uint64, len(eps))
	if len(eps) == 0 || capacity <= 0 {
		return plan, weights
	}
	type held struct {
		w   uint64
		key int
	}
	holds := make([][]held, len(eps))
	// below[i] is the weight of key i's last proposal: it next proposes to
	// the best endpoint ranked strictly below it; has[i] counts its homes.
	below := make([]uint64, len(keys))
	first := make([]bool, len(keys))
	has := make([]int, len(keys))
	free := make([]int, len(keys))
	for i := range keys {
		free[i], first[i] = i, true
	}
	for len(free) > 0 {
		i := free[len(free)-1]
		free = free[:len(free)-1]
		j, w := -1, uint64(0)
		for e, eh := range eps {
			if x := weight(keys[i], eh); (first[i] || x < below[i]) && (j < 0 || x > w) {
				j, w = e, x
			}
		}
		if j < 0 {
			continue // proposed everywhere: fewer homes than wanted
		}
		first[i], below[i] = false, w
		switch {
		case len(holds[j]) < capacity:
			holds[j] = append(holds[j], held{w, i})
			has[i]++
		default:
			m := 0
			for x := range holds[j] {
				if holds[j][x].w < holds[j][m].w {
					m = x
				}
			}
			if holds[j][m].w < w {
				out := holds[j][m].key
				has[out]--
				free = append(free, out)
				holds[j][m] = held{w, i}
				has[i]++
			}
		}
		if has[i] < want[i] {
			free = append(free, i)
		}
	}
	type home struct {
		w  uint64
		ep uint64
	}
	byKey := make([][]home, len(keys))
	for j, hs := range holds {
		for _, x := range hs {
			byKey[x.key] = append(byKey[x.key], home{x.w, eps[j]})
			weights[j] = append(weights[j], mix(keys[x.key]^eps[j]))
		}
	}
	for i, hs := range byKey {
		if len(hs) == 0 {
			continue
		}
		slices.SortFunc(hs, func(a, b home) int { return cmp.Compare(b.w, a.w) })
		out := make([]uint64, len(hs))
		for x, h := range hs {
			out[x] = h.ep
		}
		plan[keys[i]] = out
	}
	return plan, weights
}

// expire deletes the keys of at used before forget and returns the oldest
// use left, or oldest when that is older (0: none).
func expire(at map[uint64]int64, forget, oldest int64) int64 {
	for k, t := range at {
		if t < forget {
			delete(at, k)
			continue
		}
		if oldest == 0 || t < oldest {
			oldest = t
		}
	}
	return oldest
}

// sortByRecency orders keys most recently used first.
func sortByRecency(keys []uint64, at map[uint64]int64) {
	slices.SortFunc(keys, func(a, b uint64) int { return cmp.Compare(at[b], at[a]) })
}
