package fleet

import (
	"fmt"
	"runtime"
	"testing"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// benchReport is a proxy's report of n sends of k chain keys each (18: a
// 4,000-token prompt), to 8 endpoints.
func benchReport(n, k, seed int) *fleetv1.KeyReport {
	ps := &fleetv1.PoolSends{Pool: "pool"}
	keys := make([]uint64, k)
	for i := range n {
		for k := range keys {
			keys[k] = uint64(seed*1_000_003 + i*31 + k)
		}
		ps.Add(fleetv1.Sent{Endpoint: uint64(i % 8), Keys: keys})
	}
	return &fleetv1.KeyReport{Sends: []*fleetv1.PoolSends{ps}}
}

// BenchmarkSendRingMemory fills a gateway's ring far past its bounds
// (default Options) with reports of 50 sends of k keys and reports the
// heap it holds once full (held-MiB) and the sends and keys it holds:
// with 18 keys a send (4,000-token prompts) the key bound holds, with 2
// (short prompts) the send bound.
func BenchmarkSendRingMemory(b *testing.B) {
	for _, k := range []int{2, 18} {
		b.Run(fmt.Sprintf("keys=%d", k), func(b *testing.B) { benchRingMemory(b, k) })
	}
}

func benchRingMemory(b *testing.B, k int) {
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		a := NewAggregator(Options{})
		for i := range 2000 { // 100,000 sends
			if err := a.Ingest("ns/gw", fmt.Sprint("proxy-", i%16), benchReport(50, k, i)); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		sends, keys := a.buffered()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "held-MiB")
		b.ReportMetric(float64(sends), "sends")
		b.ReportMetric(float64(keys), "keys")
		runtime.KeepAlive(a)
	}
}

// BenchmarkSendsFanOut is the control plane's work per send with 16
// proxies of one gateway: each report of 50 sends is ingested, then every
// stream builds its push (all but the reporter get the sends). ns/op is
// per send, fanned out to 15 proxies.
func BenchmarkSendsFanOut(b *testing.B) {
	const proxies, perReport = 16, 50
	a := NewAggregator(Options{})
	_, ring, _ := a.subscribe("ns/gw")
	streams := make([]*streamState, proxies)
	for i := range streams {
		streams[i] = &streamState{node: fmt.Sprint("proxy-", i), takesSends: true, cursor: ring.start(false)}
	}
	reports := make([]*fleetv1.KeyReport, 64)
	for i := range reports {
		reports[i] = benchReport(perReport, 18, i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += perReport {
		from := n / perReport % proxies
		if err := a.Ingest("ns/gw", streams[from].node, reports[n/perReport%len(reports)]); err != nil {
			b.Fatal(err)
		}
		for _, st := range streams {
			if _, more := a.next("ns/gw", ring, st); more {
				b.Fatal("one report's sends did not fit one push")
			}
		}
	}
}
