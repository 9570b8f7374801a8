package picker

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// chainTable keeps simplelru's semantics exactly (which keys are held,
// and in which recency order, after any sequence of gets, peeks, adds and
// removes), so what the chain index forgets, and therefore every pick, is
// what it was with simplelru. Keys share low and high bits in runs, to
// exercise long probe runs and their backward-shift deletion.
func TestChainTableIsAnLRU(t *testing.T) {
	for _, limit := range []int{1, 3, 100, 700} {
		rng := rand.New(rand.NewPCG(uint64(limit), 7))
		tab := newChainTable(limit)
		ref, err := simplelru.NewLRU[uint64, int64](limit, nil)
		if err != nil {
			t.Fatal(err)
		}
		key := func() uint64 {
			k := rng.Uint64N(uint64(3 * limit))
			if k%2 == 0 {
				return k << 40 // same low bits
			}
			return k
		}
		for step := range 20000 {
			k := key()
			switch op := rng.IntN(10); {
			case op < 4: // put, as chainIndex.put does
				e := tab.get(k)
				if e == nil {
					e = tab.add(k)
				}
				e[0].at = int64(step)
				ref.Add(k, int64(step))
			case op < 6:
				e := tab.peek(k)
				v, ok := ref.Peek(k)
				if (e != nil) != ok || (ok && e[0].at != v) {
					t.Fatalf("limit %d step %d: peek %#x: %v, want %v (%d)", limit, step, k, e, ok, v)
				}
			case op < 7:
				if got, want := tab.contains(k), ref.Contains(k); got != want {
					t.Fatalf("limit %d step %d: contains %#x: %v, want %v", limit, step, k, got, want)
				}
			case op < 8:
				e := tab.get(k)
				v, ok := ref.Get(k)
				if (e != nil) != ok || (ok && e[0].at != v) {
					t.Fatalf("limit %d step %d: get %#x: %v, want %v (%d)", limit, step, k, e, ok, v)
				}
			default:
				tab.drop(k)
				ref.Remove(k)
			}
			if step%97 == 0 || limit < 10 {
				checkChainTable(t, tab, ref.Keys(), step)
			}
		}
		checkChainTable(t, tab, ref.Keys(), -1)
	}
}

// checkChainTable fails unless tab holds exactly want, oldest first, each
// key reachable through the slots.
func checkChainTable(t *testing.T, tab *chainTable, want []uint64, step int) {
	t.Helper()
	var got []uint64
	for n := tab.links[0].prev; n != 0; n = tab.links[n].prev {
		got = append(got, tab.links[n].key)
		if _, at := tab.find(tab.links[n].key); at != n {
			t.Fatalf("step %d: key %#x of node %d found at node %d", step, tab.links[n].key, n, at)
		}
	}
	if !slices.Equal(got, want) || tab.n != len(want) {
		t.Fatalf("step %d: held %d keys %x, want %x", step, tab.n, got, want)
	}
	held := 0
	for _, s := range tab.slots {
		if s.node != 0 {
			held++
		}
	}
	if held != len(want) {
		t.Fatalf("step %d: %d slots used, want %d", step, held, len(want))
	}
}
