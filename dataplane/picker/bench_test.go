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
	sched, err := picker.FromProfile(nil)
	if err != nil {
		b.Fatal(err)
	}
	// 32 groups sharing 4k-token system prompts, as in the benchmark.
	reqs := make([]*picker.Request, 32)
	for i := range reqs {
		sys := fmt.Sprintf("group %d: ", i) + strings.Repeat("you are a helpful assistant. ", 600)
		reqs[i] = &picker.Request{Model: "m", Body: chatBody(sys, "question")}
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
