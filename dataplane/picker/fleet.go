package picker

import (
	"sync"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// Fleet is a pool picker's side of the fleet-key exchange
// (dataplane/fleetkeys): the affinity keys it used, the fleet's keys it
// plans over, and — for the cost model — the prompts it sent where, so
// every proxy of a gateway learns where the others' prompts went and all
// of them estimate the same cached prefixes (stateless proxies agree
// because they decide from the same inputs).
type Fleet interface {
	// KeysUsedSince appends the affinity keys used after since (unix ns).
	KeysUsedSince(since int64, out []KeyUse) []KeyUse
	// SetFleetKeys replaces the fleet's keys (nil: none).
	SetFleetKeys(f *FleetKeys)
	// FleetKeysInUse returns the fleet keys the plan uses (nil: none).
	FleetKeysInUse() *FleetKeys
	// KeyWindow is how long a key is kept after its last use.
	KeyWindow() time.Duration
	// SendsSince appends the sends this proxy made after cursor (0: all
	// it still holds) and returns them with the cursor to pass next.
	SendsSince(cursor uint64, out []Send) ([]Send, uint64)
	// MergeSends records other proxies' sends as if this proxy had made
	// them: each is a hint that the endpoint holds the prompt's prefix.
	MergeSends(sends []Send)
	// Loads appends this proxy's own latest scrape of each of the pool's
	// endpoints it knows (none that another proxy relayed).
	Loads(out []Load) []Load
	// MergeLoads hands the picker other proxies' scrapes: each endpoint
	// takes one over when it is newer than the one it holds
	// (endpoints.Endpoint.Adopt). It returns how many it took.
	MergeLoads(loads []Load) int
}

// Load is one scrape of an endpoint as the fleet exchange carries it: the
// endpoint's Hash and the metrics (At in the clock of whoever holds the
// Load; read-only).
type Load struct {
	Endpoint uint64
	Metrics  *endpoints.Metrics
}

// Send is one prompt a proxy sent: the endpoint (its Hash, the same on
// every proxy), the prompt's chain keys (hashes of its leading blocks at
// the positions the cost model records), the prompt tokens it queued for
// prefill there (those the sender believed uncached), the output tokens
// the sender expected, at At (unix ns, in the clock of whoever holds the
// Send: the exchange carries ages).
//
// A Send with Prefilled set is no prompt but news of one's first token
// (FirstByte): at At the endpoint had done Prefill tokens of the prefill
// backlog the sender counted (no keys, no output).
type Send struct {
	Endpoint  uint64
	Keys      []uint64
	Prefill   float64
	Output    float64
	At        int64
	Prefilled bool
}

// KeyWindow implements Fleet.
func (s *PrefixScorer) KeyWindow() time.Duration { return s.Window }

// SendsSince implements Fleet: the weighted prefix scorer shares only its
// affinity keys.
func (s *PrefixScorer) SendsSince(cursor uint64, out []Send) ([]Send, uint64) { return out, cursor }

// MergeSends implements Fleet (nothing to merge for the weighted scorer).
func (s *PrefixScorer) MergeSends([]Send) {}

// Loads implements Fleet: the weighted scorers decide on this proxy's own
// scrapes.
func (s *PrefixScorer) Loads(out []Load) []Load { return out }

// MergeLoads implements Fleet (the weighted scorers take no relayed
// scrapes).
func (s *PrefixScorer) MergeLoads([]Load) int { return 0 }

// NewerLoads keeps the loads of ls whose scrape was taken after the one
// of the same endpoint reported before, recording them in reported (by
// endpoint, unix ns): what a proxy's next report carries.
func NewerLoads(ls []Load, reported map[uint64]int64) []Load {
	out := ls[:0]
	for _, l := range ls {
		if at := l.Metrics.At.UnixNano(); at > reported[l.Endpoint] {
			reported[l.Endpoint] = at
			out = append(out, l)
		}
	}
	return out
}

// outbox holds the prompts a cost model sent, for the fleet exchange to
// read: a ring of sends over a ring of keys, both fixed-size, so recording
// a send allocates nothing. A reader that falls more than a ring behind
// loses the oldest sends (they are hints).
type outbox struct {
	mu    sync.Mutex
	seq   uint64 // sequence number of the newest send (0: none yet)
	heads [outboxSends]outboxHead
	keys  [outboxKeys]uint64
	next  int // next free slot in keys
}

type outboxHead struct {
	seq, ep         uint64
	off, n          int
	prefill, output float64
	at              int64
	prefilled       bool
}

const (
	outboxSends = 8 << 10
	outboxKeys  = 64 << 10
)

// add records a send of keys to ep at at (unix ns) that queued prefill
// tokens there and expects output tokens.
func (o *outbox) add(ep uint64, keys []chainKey, prefill, output float64, at int64) {
	n := min(len(keys), outboxKeys/8)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	h := &o.heads[o.seq%outboxSends]
	*h = outboxHead{seq: o.seq, ep: ep, off: o.next, n: n, prefill: prefill, output: output, at: at}
	// Keep the deepest keys when a prompt has more than fit.
	for _, k := range keys[len(keys)-n:] {
		o.keys[o.next] = k.Hash
		o.next = (o.next + 1) % outboxKeys
	}
}

// addPrefilled records that ep had done tokens of the prefill backlog at
// at (unix ns): a Send with Prefilled set.
func (o *outbox) addPrefilled(ep uint64, tokens float64, at int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	o.heads[o.seq%outboxSends] = outboxHead{seq: o.seq, ep: ep, off: o.next, prefill: tokens, at: at, prefilled: true}
}

// since appends the sends after cursor and returns the new cursor.
func (o *outbox) since(cursor uint64, out []Send) ([]Send, uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	first := cursor + 1
	if o.seq >= outboxSends && first <= o.seq-outboxSends {
		first = o.seq - outboxSends + 1
	}
	// Keys are overwritten before their heads when sends are long:
	// only sends whose keys are all still in the ring are read.
	var written uint64 // keys written after a head's keys, newest first
	oldest := o.seq + 1
	for q := o.seq; q >= first && q > 0; q-- {
		h := &o.heads[q%outboxSends]
		written += uint64(h.n)
		if written > outboxKeys {
			break
		}
		oldest = q
	}
	for q := oldest; q <= o.seq; q++ {
		h := &o.heads[q%outboxSends]
		s := Send{Endpoint: h.ep, Keys: make([]uint64, h.n), Prefill: h.prefill, Output: h.output, At: h.at, Prefilled: h.prefilled}
		for i := range h.n {
			s.Keys[i] = o.keys[(h.off+i)%outboxKeys]
		}
		out = append(out, s)
	}
	return out, o.seq
}

// KeysUsedSince implements Fleet.
func (m *CostModel) KeysUsedSince(since int64, out []KeyUse) []KeyUse {
	return m.homes.keysUsedSince(since, out)
}

// SetFleetKeys implements Fleet.
func (m *CostModel) SetFleetKeys(f *FleetKeys) { m.homes.setFleet(f) }

// FleetKeysInUse implements Fleet.
func (m *CostModel) FleetKeysInUse() *FleetKeys { return m.homes.fleetInUse() }

// KeyWindow implements Fleet.
func (m *CostModel) KeyWindow() time.Duration { return m.plan.Window }

// SendsSince implements Fleet.
func (m *CostModel) SendsSince(cursor uint64, out []Send) ([]Send, uint64) {
	return m.out.since(cursor, out)
}

// MergeSends implements Fleet. Sends to endpoints this proxy has not had
// as candidates yet are dropped: it learns the pool's endpoints with its
// first pick.
//
// A send's prefill joins the endpoint's backlog, less what the endpoint
// prefilled since it was sent: the long prompt another proxy just sent
// there queues ahead of this proxy's next request, and no scrape shows it
// (the waiting count says 1 either way). With 4 proxies and only their
// own sends in the backlog, TTFT p90 on unique prompts of mixed lengths
// was 1.3× one proxy's in routesim — worse than round robin. Each send
// also counts as a request the endpoint got since its latest scrape
// (endpoints.Endpoint.NoteOthersSend).
//
// What a send writes into the endpoint's KV cache (its prefill and
// expected output) counts towards evicting the prefixes sent there
// before: while sends arrive, the others' writes are these, not copies of
// this proxy's own (see record). (routesim, 4 proxies, 5 seeds: with the
// copies, prefix groups under KV pressure were believed evicted too soon
// and spread over more replicas — shared prefixes saturated 1,540 tok/s
// against 2,331 on one proxy.)
func (m *CostModel) MergeSends(sends []Send) {
	now := m.clock().UnixNano()
	rate := 1 / m.est.prefillToken
	heard := false
	for _, s := range sends {
		v, ok := m.known.Load(s.Endpoint)
		if !ok {
			continue
		}
		ep := v.(*endpoints.Endpoint)
		heard = true
		if s.Prefilled {
			ep.Prefilled(s.Prefill, s.At, now, rate)
			continue
		}
		// As for this proxy's own sends (record): the index keeps the
		// Written count after the send, so its own writes do not count
		// towards evicting it.
		ep.AddWritten(writes(s.Prefill+s.Output, ep))
		m.index.recordHashes(s.Keys, ep, ep.Written())
		ep.NoteOthersSend(s.At, now)
		ep.AddSend(s.Prefill, s.At, now, rate)
	}
	if heard {
		m.exchangeAt.Store(now)
	}
}

// Loads implements Fleet.
func (m *CostModel) Loads(out []Load) []Load {
	m.known.Range(func(k, v any) bool {
		if md := v.(*endpoints.Endpoint).Metrics(); md != nil && !md.Relayed {
			out = append(out, Load{Endpoint: k.(uint64), Metrics: md})
		}
		return true
	})
	return out
}

// MergeLoads implements Fleet. Scrapes of endpoints this proxy does not
// know are dropped. Each of N proxies scrapes every N × 50 ms (the model
// servers' scrape load of one proxy), so alone it decides on metrics up
// to N times older than one proxy does; with the others' scrapes relayed
// (5–10 ms late) it decides on the newest any of them took. routesim, 4
// proxies, 15 seeds, TTFT p90 without → with (1 proxy): bursty arrivals
// 2.45 → 2.15 s (2.06), LoRA 0.305 → 0.297 s (0.272), unequal replicas
// 0.256 → 0.249 s (0.229).
func (m *CostModel) MergeLoads(loads []Load) int {
	n, heard := 0, false
	for _, l := range loads {
		v, ok := m.known.Load(l.Endpoint)
		if !ok || l.Metrics == nil {
			continue
		}
		heard = true
		md := *l.Metrics // Adopt takes its argument over
		if v.(*endpoints.Endpoint).Adopt(&md) {
			n++
		}
	}
	if heard {
		m.exchangeAt.Store(m.clock().UnixNano())
	}
	return n
}
