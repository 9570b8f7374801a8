package picker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

func benchPick(b *testing.B, n int) {
	es := eps(n)
	now := time.Now()
	for i, e := range es {
		e.SetMetrics(&endpoints.Metrics{Waiting: float64(i % 7), Running: float64(i % 5), KVCacheUsage: float64(i%10) / 10,
			MaxLoRA: 4, RunningAdapters: []string{"a", "b"}, At: now.Add(time.Hour)})
	}
	// 32 groups sharing 4k-token system prompts, as in the benchmark.
	reqs := make([]*picker.Request, 32)
	for i := range reqs {
		sys := fmt.Sprintf("group %d: ", i) + strings.Repeat("you are a helpful assistant. ", 600)
		reqs[i] = &picker.Request{Model: "m", Body: chatBody(sys, "question")}
	}
	benchPicks(b, reqs, es)
}

// benchPicks measures the default profile's picks over es, cycling
// through reqs.
func benchPicks(b *testing.B, reqs []*picker.Request, es []*endpoints.Endpoint) {
	sched, err := picker.FromProfile(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := sched.Pick(reqs[i%len(reqs)], es); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPickLoRA picks for 16 adapters on 64 endpoints with 4 slots each
// (home plan, own send memory, scraped adapters).
func BenchmarkPickLoRA(b *testing.B) {
	es := eps(64)
	now := time.Now()
	for i, e := range es {
		e.SetMetrics(&endpoints.Metrics{Waiting: float64(i % 3), Running: float64(i % 9), KVCacheUsage: float64(i%10) / 10,
			MaxLoRA: 4, RunningAdapters: []string{fmt.Sprintf("adapter-%d", i%16), fmt.Sprintf("adapter-%d", (i+5)%16)}, At: now.Add(time.Hour)})
	}
	reqs := make([]*picker.Request, 16)
	for i := range reqs {
		reqs[i] = &picker.Request{Model: fmt.Sprintf("adapter-%d", i), Body: chatBody("", fmt.Sprintf("question %d", i))}
	}
	benchPicks(b, reqs, es)
}

func BenchmarkPick64(b *testing.B)  { benchPick(b, 64) }
func BenchmarkPick256(b *testing.B) { benchPick(b, 256) }

func BenchmarkBlockHashes(b *testing.B) {
	body := []byte(`{"messages":"` + strings.Repeat("abcdefgh", 64*picker.MaxBlocks/8))
	dst := make([]uint64, 0, picker.MaxBlocks)
	b.SetBytes(int64(picker.MaxBlocks * picker.BlockChars))
	b.ReportAllocs()
	for b.Loop() {
		dst = picker.AppendBlockHashes(dst[:0], "m", body)
	}
}

// BenchmarkPick64Long32k picks for conversations of ~32k tokens (128 KB of
// history) on 64 endpoints: the cost model hashes the whole prompt and
// matches it at every recorded depth.
func BenchmarkPick64Long32k(b *testing.B) {
	es := eps(64)
	now := time.Now()
	for i, e := range es {
		e.SetMetrics(&endpoints.Metrics{Waiting: float64(i % 7), Running: float64(i % 5), KVCacheUsage: float64(i%10) / 10,
			KVCapacity: 1 << 20, At: now.Add(time.Hour)})
	}
	reqs := make([]*picker.Request, 16)
	history := strings.Repeat("and then the user asked about the next chapter of the report. ", 2100) // ~128 KB
	for i := range reqs {
		reqs[i] = &picker.Request{Model: "m", Body: chatBody(fmt.Sprintf("conversation %d. ", i)+history, "next?")}
	}
	benchPicks(b, reqs, es)
}
