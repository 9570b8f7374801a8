package picker

import (
	"math"
	"slices"
)

// FleetKeys are the affinity keys of one pool that all of a gateway's
// proxies used within the pool's window, as the control plane aggregates
// their reports (dataplane/fleetkeys, controlplane/fleet). A proxy plans
// its hot prefixes over its own keys and these, so every proxy homes a
// prefix the same way from its first request to any of them, instead of
// once each proxy has seen it itself. They are hints: without them the
// plan is built over the own keys alone.
type FleetKeys struct {
	// Hot keys were sent at least twice in the pool (by one proxy twice
	// or by two proxies), Once keys once; each key is in one of them.
	Hot, Once []uint64
}

// KeyUse is an affinity key this proxy used, for its report to the
// control plane.
type KeyUse struct {
	Key uint64
	// Last is when this proxy last sent the key (unix ns).
	Last int64
	// Hot reports that this proxy sent it at least twice.
	Hot bool
}

// SetFleetKeys replaces the pool's fleet keys (nil: none, the plan falls
// back to the own keys); the next pick rebuilds the plan.
func (s *PrefixScorer) SetFleetKeys(f *FleetKeys) { s.homes.setFleet(f) }

func (h *prefixHomes) setFleet(f *FleetKeys) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f == h.fleet {
		return
	}
	if f != nil && h.fleet != nil && slices.Equal(f.Hot, h.fleet.Hot) && slices.Equal(f.Once, h.fleet.Once) {
		return
	}
	h.fleet = f
	h.due = math.MinInt64
}

// KeysUsedSince appends to out the affinity keys this proxy sent after
// since (unix ns), hot and once, and returns it.
func (s *PrefixScorer) KeysUsedSince(since int64, out []KeyUse) []KeyUse {
	return s.homes.keysUsedSince(since, out)
}

func (h *prefixHomes) keysUsedSince(since int64, out []KeyUse) []KeyUse {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, t := range h.hot {
		if t > since {
			out = append(out, KeyUse{Key: k, Last: t, Hot: true})
		}
	}
	for k, t := range h.once {
		if t > since {
			out = append(out, KeyUse{Key: k, Last: t})
		}
	}
	return out
}

// FleetKeysInUse returns the fleet keys the plan is built over (nil:
// none), for the admin API and tests.
func (s *PrefixScorer) FleetKeysInUse() *FleetKeys { return s.homes.fleetInUse() }

func (h *prefixHomes) fleetInUse() *FleetKeys {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fleet
}
