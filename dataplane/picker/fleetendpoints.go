package picker

import (
	"cmp"
	"slices"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// SetEndpoints tells the scheduler its pool's endpoints (the pipeline does
// with every config it builds). A cost model places other proxies' sends
// (MergeSends) on these, so it learns where the fleet's prompts went even
// before it picks an endpoint itself, and forgets endpoints gone from the
// pool.
func (s *Scheduler) SetEndpoints(eps []*endpoints.Endpoint) {
	if s.cost != nil {
		s.cost.setEndpoints(eps)
	}
}

// Endpoints returns the endpoints the scheduler's cost model knows (the
// pool's, and any it picked since), by address; nil without a cost model.
func (s *Scheduler) Endpoints() []*endpoints.Endpoint {
	if s.cost == nil {
		return nil
	}
	var out []*endpoints.Endpoint
	s.cost.known.Range(func(_, v any) bool {
		out = append(out, v.(*endpoints.Endpoint))
		return true
	})
	slices.SortFunc(out, func(a, b *endpoints.Endpoint) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

// setEndpoints makes eps the known endpoints.
func (m *CostModel) setEndpoints(eps []*endpoints.Endpoint) {
	keep := make(map[uint64]bool, len(eps))
	for _, ep := range eps {
		keep[ep.Hash] = true
		m.known.Store(ep.Hash, ep)
	}
	m.known.Range(func(k, _ any) bool {
		if !keep[k.(uint64)] {
			m.known.Delete(k)
		}
		return true
	})
}

// Get returns the named pool's scheduler, nil when there is none.
func (s *Schedulers) Get(pool string) *Scheduler {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.pools[pool]; c != nil {
		return c.sched
	}
	return nil
}
