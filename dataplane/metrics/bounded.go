package metrics

import "sync"

// bounded is a map of series sets keyed by label values, created on first
// use and bounded: past max keys, new keys share the set of the key other,
// so label values from outside (model names from clients, routes from
// configuration) cannot grow the proxy's memory without limit. Lookups of
// known keys take a read lock and allocate nothing.
type bounded[K comparable, V any] struct {
	mu    sync.RWMutex
	m     map[K]*V
	max   int
	other K
}

func newBounded[K comparable, V any](max int, other K) *bounded[K, V] {
	return &bounded[K, V]{m: map[K]*V{}, max: max, other: other}
}

// get returns k's set, creating it with make (under the write lock) when
// missing.
func (b *bounded[K, V]) get(k K, make func(K) *V) *V {
	b.mu.RLock()
	v := b.m[k]
	b.mu.RUnlock()
	if v != nil {
		return v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if v = b.m[k]; v != nil {
		return v
	}
	if len(b.m) >= b.max {
		k = b.other
		if v = b.m[k]; v != nil {
			return v
		}
	}
	v = make(k)
	b.m[k] = v
	return v
}
