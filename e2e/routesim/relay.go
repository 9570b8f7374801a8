package routesim

import (
	"time"

	"github.com/infergate/infergate/dataplane/picker"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// The fleet exchange's production intervals (dataplane/fleetkeys and
// controlplane/fleet): proxies report their sends and scrapes, and the
// control plane pushes the other proxies', every fleetv1.SendsEvery; key
// sets go every fleetv1.KeysEvery.
const (
	relayEvery = fleetv1.SendsEvery
	keysEvery  = fleetv1.KeysEvery
)

// relayPeriod is the configured sends period (Config.RelayEvery).
func (c *Config) relayPeriod() time.Duration {
	if c.RelayEvery > 0 {
		return c.RelayEvery
	}
	return relayEvery
}

// relay emulates the control plane's fleet exchange in virtual time:
// every period each proxy's new sends and affinity keys are collected,
// and every other proxy gets the sends one period late, as a report
// followed by a push arrives; the union of the keys goes out at most
// every keysEvery.
func (s *sim) relay() {
	fleets := make([]picker.Fleet, len(s.prox))
	for p, px := range s.prox {
		if sc, ok := px.pick.(*picker.Scheduler); ok {
			fleets[p] = sc.Fleet()
		}
	}
	// Deliver what was collected a period ago.
	keysDue := s.keys != nil && s.now-s.keysAt >= max(keysEvery, s.cfg.relayPeriod())
	for p, f := range fleets {
		if f == nil || s.inbox == nil {
			continue
		}
		f.MergeSends(s.inbox[p])
		f.MergeLoads(s.loads[p])
		if keysDue {
			f.SetFleetKeys(s.keys)
		}
	}
	if keysDue {
		s.keysAt = s.now
	}
	if s.cursors == nil {
		s.cursors = make([]uint64, len(s.prox))
		s.reported = make([]map[uint64]int64, len(s.prox))
		for p := range s.reported {
			s.reported[p] = map[uint64]int64{}
		}
	}
	inbox := make([][]picker.Send, len(s.prox))
	loads := make([][]picker.Load, len(s.prox))
	uses := map[uint64]int{}
	hot := map[uint64]bool{}
	since := s.clock().Add(-s.cfg.window()).UnixNano()
	for p, f := range fleets {
		if f == nil {
			continue
		}
		var sends []picker.Send
		sends, s.cursors[p] = f.SendsSince(s.cursors[p], nil)
		var own []picker.Load
		if !s.cfg.NoLoads {
			own = picker.NewerLoads(f.Loads(nil), s.reported[p])
		}
		for q := range s.prox {
			if q != p {
				inbox[q] = append(inbox[q], sends...)
				loads[q] = append(loads[q], own...)
			}
		}
		for _, u := range f.KeysUsedSince(since, nil) {
			uses[u.Key]++
			hot[u.Key] = hot[u.Key] || u.Hot
		}
	}
	keys := &picker.FleetKeys{}
	for k, n := range uses {
		if n > 1 || hot[k] {
			keys.Hot = append(keys.Hot, k)
		} else {
			keys.Once = append(keys.Once, k)
		}
	}
	s.inbox, s.loads, s.keys = inbox, loads, keys
}

// window is how long the emulated control plane keeps a key.
func (c *Config) window() time.Duration { return 2 * time.Minute }
