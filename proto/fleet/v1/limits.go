package fleetv1

import (
	"fmt"
	"time"
)

// Limits of the PrefixKeys exchange, shared by the proxies that report keys
// and the control plane that aggregates them, so neither sends what the
// other refuses.
const (
	// MaxKeysPerPool bounds the keys of one pool, in one report and in what
	// the control plane keeps and serves; it is also the bound of a proxy's
	// own prefix plan.
	MaxKeysPerPool = 4096
	// MaxPoolsPerReport and MaxPoolNameBytes bound a report's pools.
	MaxPoolsPerReport = 1024
	MaxPoolNameBytes  = 512
	// DefaultKeyWindow is how long a key counts after its last use when a
	// report names no window (the prefix scorer's default window);
	// MaxKeyWindow caps a reported window.
	DefaultKeyWindow = 2 * time.Minute
	MaxKeyWindow     = time.Hour
)

// CheckReport checks a report against the limits, with at most maxKeys keys
// per pool (MaxKeysPerPool unless a smaller bound is configured), its sends
// (see checkSends), its problems (see checkProblems) and its scrapes
// (see checkLoads). A report that
// fails is refused whole.
func CheckReport(r *KeyReport, maxKeys int) error {
	if len(r.GetPools()) > MaxPoolsPerReport {
		return fmt.Errorf("report has %d pools, at most %d", len(r.GetPools()), MaxPoolsPerReport)
	}
	for _, p := range r.GetPools() {
		switch {
		case p.GetPool() == "" || len(p.GetPool()) > MaxPoolNameBytes:
			return fmt.Errorf("pool name %q: want 1 to %d bytes", p.GetPool(), MaxPoolNameBytes)
		case len(p.GetKeys()) > maxKeys:
			return fmt.Errorf("pool %s: %d keys in one report, at most %d", p.GetPool(), len(p.GetKeys()), maxKeys)
		case p.GetWindow() != nil && (p.GetWindow().CheckValid() != nil || p.GetWindow().AsDuration() < 0):
			return fmt.Errorf("pool %s: bad window %v", p.GetPool(), p.GetWindow())
		}
		for _, k := range p.GetKeys() {
			if k.GetAge() != nil && (k.GetAge().CheckValid() != nil || k.GetAge().AsDuration() < 0) {
				return fmt.Errorf("pool %s: key %x: bad age %v", p.GetPool(), k.GetKey(), k.GetAge())
			}
		}
	}
	if err := checkProblems(r.GetProblems()); err != nil {
		return err
	}
	if err := checkLoads(r.GetLoads()); err != nil {
		return err
	}
	return checkSends(r.GetSends())
}
