package pipeline

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/dataplane/upstream"
)

// Bounds of the recent-decision rings: each pool keeps its last
// DecisionRingSize explained picks, at most one per DecisionEvery, so a
// pool picking at 10k/s explains 20 of them a second instead of building
// 10k Decisions (a Decision allocates, a pick otherwise does not). While a
// pool picks less often than that, every pick is kept.
const (
	DecisionRingSize = 64
	DecisionEvery    = 50 * time.Millisecond
)

// RecentDecision is one explained pick of a pool (GET /decisions).
type RecentDecision struct {
	Pool string    `json:"pool"`
	At   time.Time `json:"at"`
	// RequestID is the request's x-request-id (a mirror's pick carries
	// the mirrored request's).
	RequestID string `json:"requestId,omitempty"`
	*picker.Decision
}

// decisions keeps each pool's ring of recent decisions, and hands a traced
// request's decision to its pick span.
type decisions struct {
	mu    sync.Mutex
	pools map[string]*decisionRing // by backend name

	// traced holds the requests whose trace records while they pick
	// (*picker.Request → *pickSlot); nTraced counts them, so that picks
	// find out nobody is traced with one atomic load.
	traced  sync.Map
	nTraced atomic.Int32
}

// pickSlot receives a traced request's decision.
type pickSlot struct{ d *picker.Decision }

// decision is the decision the slot received, nil for none (or no slot).
func (s *pickSlot) decision() *picker.Decision {
	if s == nil {
		return nil
	}
	return s.d
}

type decisionRing struct {
	pool string
	// last is when (unix ns) the ring last kept a decision.
	last atomic.Int64
	hook picker.DecisionHook

	mu   sync.Mutex
	buf  [DecisionRingSize]RecentDecision
	next int // where the next one goes
	n    int // how many buf holds
}

func newDecisions() *decisions { return &decisions{pools: map[string]*decisionRing{}} }

// hookFor returns the decision hook of the named pool's scheduler, the
// same one for the pool's lifetime (its ring survives config versions; a
// backend's name includes its pool's, so pool never changes for a name).
func (ds *decisions) hookFor(name, pool string) *picker.DecisionHook {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	r := ds.pools[name]
	if r == nil {
		r = &decisionRing{pool: pool}
		r.hook = picker.DecisionHook{
			Want: func(req *picker.Request) bool {
				return time.Now().UnixNano()-r.last.Load() >= int64(DecisionEvery) || ds.isTraced(req)
			},
			Record: func(req *picker.Request, d *picker.Decision) { ds.record(r, req, d) },
		}
		ds.pools[name] = r
	}
	return &r.hook
}

// retain drops the rings of pools not in keep.
func (ds *decisions) retain(keep func(name string) bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for name := range ds.pools {
		if !keep(name) {
			delete(ds.pools, name)
		}
	}
}

func (ds *decisions) isTraced(req *picker.Request) bool {
	if ds.nTraced.Load() == 0 {
		return false
	}
	_, ok := ds.traced.Load(req)
	return ok
}

// record keeps d in r when r's period has passed (claimed by one caller
// when several picks wanted it at once) and gives it to req's trace if
// it records.
func (ds *decisions) record(r *decisionRing, req *picker.Request, d *picker.Decision) {
	if ds.nTraced.Load() > 0 {
		if s, ok := ds.traced.Load(req); ok {
			s.(*pickSlot).d = d
		}
	}
	now := time.Now()
	last := r.last.Load()
	if now.UnixNano()-last < int64(DecisionEvery) || !r.last.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	var id string
	if req.Header != nil {
		id = req.Header.Get(upstream.RequestIDHeader)
	}
	r.mu.Lock()
	r.buf[r.next] = RecentDecision{Pool: r.pool, At: now, RequestID: id, Decision: d}
	r.next = (r.next + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
	r.mu.Unlock()
}

// watch asks for req's decision on its next pick; the decision is in the
// slot once Pick returns (none when the picker does not explain), and
// unwatch must follow.
func (ds *decisions) watch(req *picker.Request) *pickSlot {
	s := &pickSlot{}
	ds.traced.Store(req, s)
	ds.nTraced.Add(1)
	return s
}

func (ds *decisions) unwatch(req *picker.Request) {
	ds.traced.Delete(req)
	ds.nTraced.Add(-1)
}

// Decisions returns the pools' recent decisions, newest first: pool's
// only when pool is not empty (a backend name or its source, e.g.
// "default/pool"), at most limit when limit > 0.
func (m *Pipeline) Decisions(pool string, limit int) []RecentDecision {
	ds := m.decisions
	ds.mu.Lock()
	rings := make([]*decisionRing, 0, len(ds.pools))
	for name, r := range ds.pools {
		if pool == "" || pool == name || pool == r.pool {
			rings = append(rings, r)
		}
	}
	ds.mu.Unlock()
	out := []RecentDecision{}
	for _, r := range rings {
		r.mu.Lock()
		for i := 1; i <= r.n; i++ {
			out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
		}
		r.mu.Unlock()
	}
	slices.SortStableFunc(out, func(a, b RecentDecision) int { return b.At.Compare(a.At) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// HasPool reports whether the proxy serves the named pool (backend name or
// source).
func (m *Pipeline) HasPool(pool string) bool {
	st := m.state.Load()
	if st == nil {
		return false
	}
	for name, bs := range st.backends {
		if bs.cfg.IsPool() && (name == pool || bs.cfg.Source == pool) {
			return true
		}
	}
	return false
}
