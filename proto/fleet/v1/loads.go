package fleetv1

import (
	"fmt"
	"math"
	"time"
)

// Limits of relayed scrapes (EndpointLoad). A proxy reports within them
// and the control plane refuses a report beyond them whole: a proxy is
// trusted with its gateway's traffic, but a bad value it relays must not
// make every other proxy read an endpoint as idle.
const (
	// MaxLoadsPerReport bounds the scrapes of one report (and of one
	// push): one per endpoint of the gateway.
	MaxLoadsPerReport = 1 << 14
	// MaxLoadRequests bounds waiting and running requests, as the proxy's
	// scrape parser does (vLLM's scheduler holds a few thousand at most).
	MaxLoadRequests = 1 << 20
	// MaxLoadKVTokens bounds a KV cache size in tokens.
	MaxLoadKVTokens = 1 << 40
	// MaxLoadAdapters bounds max_lora and each adapter list;
	// MaxAdapterNameBytes one adapter's name.
	MaxLoadAdapters     = 1 << 10
	MaxAdapterNameBytes = 512
	// MaxLoadAge bounds a scrape's age: a proxy decides on metrics at
	// most a second old, and one relayed later is of no use.
	MaxLoadAge = 10 * time.Second
)

// checkLoads checks a report's (or push's) scrapes: within the limits,
// every value in its domain.
func checkLoads(ls []*EndpointLoad) error {
	if len(ls) > MaxLoadsPerReport {
		return fmt.Errorf("%d endpoint loads, at most %d", len(ls), MaxLoadsPerReport)
	}
	for i, l := range ls {
		if err := l.Check(); err != nil {
			return fmt.Errorf("endpoint load %d (endpoint %016x): %w", i, l.GetEndpoint(), err)
		}
	}
	return nil
}

// Check reports why l is not a scrape a proxy may act on: a count that is
// negative, not finite or above MaxLoadRequests, a KV utilisation outside
// 0–1, an adapter list or name beyond its bound, an age beyond MaxLoadAge.
func (l *EndpointLoad) Check() error {
	for _, v := range []struct {
		name     string
		v, limit float64
	}{
		{"waiting", l.GetWaiting(), MaxLoadRequests},
		{"running", l.GetRunning(), MaxLoadRequests},
		{"kv_cache_usage", l.GetKvCacheUsage(), 1},
		{"kv_capacity_tokens", l.GetKvCapacityTokens(), MaxLoadKVTokens},
	} {
		if math.IsNaN(v.v) || v.v < 0 || v.v > v.limit {
			return fmt.Errorf("%s = %v, want 0 to %v", v.name, v.v, v.limit)
		}
	}
	if l.GetMaxLora() > MaxLoadAdapters {
		return fmt.Errorf("max_lora = %d, at most %d", l.GetMaxLora(), MaxLoadAdapters)
	}
	for _, list := range [][]string{l.GetRunningAdapters(), l.GetWaitingAdapters()} {
		if len(list) > MaxLoadAdapters {
			return fmt.Errorf("%d adapters, at most %d", len(list), MaxLoadAdapters)
		}
		for _, a := range list {
			if a == "" || len(a) > MaxAdapterNameBytes {
				return fmt.Errorf("adapter name of %d bytes, want 1 to %d", len(a), MaxAdapterNameBytes)
			}
		}
	}
	if age := time.Duration(l.GetAgeMs()) * time.Millisecond; age > MaxLoadAge {
		return fmt.Errorf("scrape is %v old, at most %v", age, MaxLoadAge)
	}
	return nil
}

// CheckPush checks what a push carries beyond key sets: the other
// proxies' scrapes (sends are checked as a receiver reads them:
// PoolSends.All skips a malformed one).
func CheckPush(m *FleetKeys) error { return checkLoads(m.GetLoads()) }
