package kvindex

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	kvindexv1 "github.com/infergate/infergate/proto/kvindex/v1"
)

func ep(i int) string { return fmt.Sprintf("10.0.%d.%d:8000", i/250, i%250) }

// naive is the reference: per server, the first key of chain it lacks.
func naive(held map[string]map[uint64]bool, chain []uint64, eps []string) []int {
	out := make([]int, len(eps))
	for i, e := range eps {
		h, ok := held[e]
		if !ok {
			out[i] = -1
			continue
		}
		for out[i] < len(chain) && h[chain[out[i]]] {
			out[i]++
		}
	}
	return out
}

func TestPoolMatchesNaive(t *testing.T) {
	for _, servers := range []int{1, 3, 64, 65, 200} {
		rng := rand.New(rand.NewPCG(uint64(servers), 1))
		p := newPool("p")
		held := map[string]map[uint64]bool{}
		chain := make([]uint64, 40)
		for i := range chain {
			chain[i] = rng.Uint64()
		}
		for s := range servers {
			n := rng.IntN(len(chain) + 1)
			sb := &kvindexv1.ServerBlocks{Endpoint: ep(s), BlockSize: 16, Replace: true, Added: slices.Clone(chain[:n])}
			// Some servers hold a later block without its parents: not a match.
			if n+2 < len(chain) && s%3 == 0 {
				sb.Added = append(sb.Added, chain[n+1])
			}
			held[ep(s)] = map[uint64]bool{}
			for _, k := range sb.Added {
				held[ep(s)][k] = true
			}
			p.apply(&kvindexv1.PoolBlocks{Pool: "p", Servers: []*kvindexv1.ServerBlocks{sb}})
		}
		// Remove some blocks again, from some servers.
		for s := 0; s < servers; s += 2 {
			if len(held[ep(s)]) > 3 {
				p.apply(&kvindexv1.PoolBlocks{Pool: "p", Servers: []*kvindexv1.ServerBlocks{{Endpoint: ep(s), BlockSize: 16, Removed: []uint64{chain[2]}}}})
				delete(held[ep(s)], chain[2])
			}
		}
		eps := []string{"10.9.9.9:1"} // unknown to the index
		for s := range servers {
			eps = append(eps, ep(s))
		}
		out := make([]int, len(eps))
		p.Match(chain, func(i int) string { return eps[i] }, out)
		if want := naive(held, chain, eps); !slices.Equal(out, want) {
			t.Fatalf("%d servers:\n got %v\nwant %v", servers, out, want)
		}
	}
}

func TestPoolReplaceAndRemove(t *testing.T) {
	p := newPool("p")
	p.apply(&kvindexv1.PoolBlocks{Pool: "p", Adapters: []string{"sql"}, Servers: []*kvindexv1.ServerBlocks{
		{Endpoint: "a:1", BlockSize: 16, Replace: true, Added: []uint64{1, 2, 3}},
		{Endpoint: "b:1", BlockSize: 16, Replace: true, Added: []uint64{1, 2}},
	}})
	out := make([]int, 2)
	eps := []string{"a:1", "b:1"}
	at := func(i int) string { return eps[i] }
	p.Match([]uint64{1, 2, 3, 4}, at, out)
	if !slices.Equal(out, []int{3, 2}) || !p.IsAdapter("sql") || p.Keys() != 3 {
		t.Fatalf("match %v keys %d", out, p.Keys())
	}
	// a is resynced with nothing; b goes away.
	p.apply(&kvindexv1.PoolBlocks{Pool: "p", Servers: []*kvindexv1.ServerBlocks{{Endpoint: "a:1", BlockSize: 16, Replace: true}}, RemovedServers: []string{"b:1"}})
	p.Match([]uint64{1, 2, 3, 4}, at, out)
	if !slices.Equal(out, []int{0, -1}) || p.Keys() != 0 || p.IsAdapter("sql") {
		t.Fatalf("after replace/remove: match %v keys %d", out, p.Keys())
	}
	// A server with another block size is not matched.
	p.apply(&kvindexv1.PoolBlocks{Pool: "p", Servers: []*kvindexv1.ServerBlocks{{Endpoint: "b:1", BlockSize: 32, Replace: true, Added: []uint64{1}}}})
	p.Match([]uint64{1}, at, out)
	if !slices.Equal(out, []int{0, -1}) {
		t.Fatalf("other block size: %v", out)
	}
}

// benchPool is a pool of n servers, each holding a prefix of one 256-block
// chain (server i holds i*4 blocks) plus 2,000 blocks of its own.
func benchPool(n int) (*Pool, []uint64, []string) {
	rng := rand.New(rand.NewPCG(1, 2))
	chain := make([]uint64, 256)
	for i := range chain {
		chain[i] = rng.Uint64()
	}
	p := newPool("p")
	var eps []string
	for s := range n {
		added := slices.Clone(chain[:min(len(chain), s*4)])
		for range 2000 {
			added = append(added, rng.Uint64())
		}
		p.apply(&kvindexv1.PoolBlocks{Pool: "p", Servers: []*kvindexv1.ServerBlocks{{Endpoint: ep(s), BlockSize: 16, Replace: true, Added: added}}})
		eps = append(eps, ep(s))
	}
	return p, chain, eps
}

func TestMatchDoesNotAllocate(t *testing.T) {
	p, chain, eps := benchPool(64)
	out := make([]int, len(eps))
	if a := testing.AllocsPerRun(50, func() { p.Match(chain, func(i int) string { return eps[i] }, out) }); a != 0 {
		t.Fatalf("Match allocates %v times", a)
	}
	if out[63] != 252 || out[0] != 0 {
		t.Fatalf("match %v", out)
	}
}

// BenchmarkMatch: a 256-block (4k-token) prompt against 8 and 64 servers,
// the longest of which holds 252 of its blocks.
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{8, 64} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			p, chain, eps := benchPool(n)
			out := make([]int, len(eps))
			b.ReportAllocs()
			for b.Loop() {
				p.Match(chain, func(i int) string { return eps[i] }, out)
			}
		})
	}
}
