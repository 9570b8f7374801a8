package picker

import (
	"sync"

	"google.golang.org/protobuf/proto"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Schedulers keeps one Scheduler per pool across config versions, so the
// prefix index survives every snapshot update that leaves the pool's
// profile unchanged (pipeline.Options.PickerFor is called for every backend
// on every Apply).
type Schedulers struct {
	mu    sync.Mutex
	pools map[string]*cached
}

type cached struct {
	profile *snapshotv1.PickerProfile
	sched   *Scheduler
}

// NewSchedulers returns an empty cache.
func NewSchedulers() *Schedulers { return &Schedulers{pools: map[string]*cached{}} }

// For returns the scheduler of the named pool for profile p (nil: the
// default), reusing the previous one when the profile is unchanged.
func (s *Schedulers) For(pool string, p *snapshotv1.PickerProfile) (*Scheduler, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.pools[pool]; c != nil && proto.Equal(c.profile, p) {
		return c.sched, nil
	}
	sched, err := FromProfile(p)
	if err != nil {
		return nil, err
	}
	s.pools[pool] = &cached{profile: p, sched: sched}
	return sched, nil
}

// Retain drops the schedulers of pools not in keep (call after a config
// change with the pools it still has).
func (s *Schedulers) Retain(keep func(pool string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.pools {
		if !keep(name) {
			delete(s.pools, name)
		}
	}
}

// Fleets returns the fleet-exchange side of every pool whose scheduler
// has one (a cost model or a prefix scorer), by pool name.
func (s *Schedulers) Fleets() map[string]Fleet {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Fleet, len(s.pools))
	for name, c := range s.pools {
		if f := c.sched.Fleet(); f != nil {
			out[name] = f
		}
	}
	return out
}

// Each calls fn with every pool's profile and scheduler (for attaching a
// pool's PrefixSource); fn must not call back into s.
func (s *Schedulers) Each(fn func(pool string, profile *snapshotv1.PickerProfile, sched *Scheduler)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, c := range s.pools {
		fn(name, c.profile, c.sched)
	}
}
