package waitqueue

import (
	"sync"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Set keeps one Queue per pool across config versions, so requests waiting
// in a pool's queue keep their place when a snapshot update arrives.
type Set struct {
	obs   Observer
	mu    sync.Mutex
	pools map[string]*Queue
}

// NewSet returns an empty set whose queues report to obs (may be nil).
func NewSet(obs Observer) *Set { return &Set{obs: obs, pools: map[string]*Queue{}} }

// For returns the queue of the pool named name (label is its name in
// metrics) for p, nil when p is nil (no queue), reusing the pool's queue
// with the new bounds. A queue switched off
// dispatches whatever waits in it. An invalid p (see
// pickerprofile.Validate) is treated as no queue.
func (s *Set) For(name, label string, p *snapshotv1.WaitQueue) *Queue {
	cfg, on, err := ConfigFrom(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.pools[name]
	if !on || err != nil {
		if q != nil {
			delete(s.pools, name)
			q.Flush()
		}
		return nil
	}
	if q == nil {
		q = New(label, cfg, s.obs)
		s.pools[name] = q
		return q
	}
	q.SetConfig(cfg)
	return q
}

// Retain drops (and flushes) the queues of pools not in keep.
func (s *Set) Retain(keep func(pool string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, q := range s.pools {
		if !keep(name) {
			delete(s.pools, name)
			q.Flush()
		}
	}
}

// Each calls f for every pool's queue with its label (for the
// queue-length metric).
func (s *Set) Each(f func(label string, q *Queue)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.pools {
		f(q.pool, q)
	}
}
