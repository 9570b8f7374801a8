package fleetv1

import (
	"fmt"
	"iter"
)

// Limits of the fleet exchange both planes hold sends to: a proxy reports
// within them, and the control plane refuses a report beyond them whole.
// They keep every message well under gRPC's default 4 MiB.
const (
	// MaxSendsPerReport bounds the sends of one report, all pools
	// together (a proxy's picker holds at most 8,192 unreported sends
	// per pool; reports go out 4 times a second).
	MaxSendsPerReport = 1 << 16
	// MaxKeysPerReport bounds the chain keys of one report, all pools
	// together: 2 MiB of keys.
	MaxKeysPerReport = 1 << 18
	// MaxKeysPerSend bounds one send's chain keys: a key per block at
	// most, and the picker hashes at most 4,096 blocks of a prompt.
	MaxKeysPerSend = 4096
)

// checkSends checks a report's sends: valid pool names and columns, and
// within the report's limits.
func checkSends(ps []*PoolSends) error {
	if len(ps) > MaxPoolsPerReport {
		return fmt.Errorf("report has sends of %d pools, at most %d", len(ps), MaxPoolsPerReport)
	}
	sends, keys := 0, 0
	for _, p := range ps {
		if p.GetPool() == "" || len(p.GetPool()) > MaxPoolNameBytes {
			return fmt.Errorf("sends of pool %q: want a pool name of 1 to %d bytes", p.GetPool(), MaxPoolNameBytes)
		}
		if err := p.Check(); err != nil {
			return fmt.Errorf("sends of pool %s: %w", p.GetPool(), err)
		}
		sends += p.Len()
		keys += len(p.GetKeys())
	}
	if sends > MaxSendsPerReport || keys > MaxKeysPerReport {
		return fmt.Errorf("report has %d sends and %d keys, at most %d and %d", sends, keys, MaxSendsPerReport, MaxKeysPerReport)
	}
	return nil
}

// Len is the number of sends in p.
func (p *PoolSends) Len() int { return len(p.GetEndpoints()) }

// Check reports why p's columns do not describe a list of sends: one
// endpoint and one key count per send, the counts adding up to the keys,
// none above MaxKeysPerSend.
func (p *PoolSends) Check() error {
	if len(p.GetEndpoints()) != len(p.GetKeyCounts()) {
		return fmt.Errorf("%d endpoints but %d key counts", len(p.GetEndpoints()), len(p.GetKeyCounts()))
	}
	total := 0
	for i, n := range p.GetKeyCounts() {
		if n > MaxKeysPerSend {
			return fmt.Errorf("send %d has %d keys, at most %d", i, n, MaxKeysPerSend)
		}
		total += int(n)
	}
	if total != len(p.GetKeys()) {
		return fmt.Errorf("key counts add up to %d but there are %d keys", total, len(p.GetKeys()))
	}
	return nil
}

// All yields each send's endpoint and keys, oldest first; the keys are a
// window of p.Keys (copy them to keep them past p). It yields nothing for
// a PoolSends that fails Check.
func (p *PoolSends) All() iter.Seq2[uint64, []uint64] {
	return func(yield func(uint64, []uint64) bool) {
		if p.Check() != nil {
			return
		}
		keys := p.GetKeys()
		off := 0
		for i, ep := range p.GetEndpoints() {
			n := int(p.GetKeyCounts()[i])
			if !yield(ep, keys[off:off+n:off+n]) {
				return
			}
			off += n
		}
	}
}

// Add appends a send of keys to endpoint ep.
func (p *PoolSends) Add(ep uint64, keys []uint64) {
	p.Endpoints = append(p.Endpoints, ep)
	p.KeyCounts = append(p.KeyCounts, uint32(len(keys)))
	p.Keys = append(p.Keys, keys...)
}
