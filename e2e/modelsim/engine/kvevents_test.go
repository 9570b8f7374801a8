package engine

import (
	"maps"
	"slices"
	"testing"

	"github.com/infergate/infergate/proto/kvevents"
)

// A subscriber that applies the events in order holds exactly the engine's
// cached prefixes after every step, under KV pressure (evictions), shared
// prefixes (private duplicates) and a reset.
func TestKVEventsMirrorCache(t *testing.T) {
	c := NewCore(Config{KVBlocks: 64, BlockSize: 4, MaxNumSeqs: 4, MaxNumBatchedTokens: 64})
	c.EnableKVEvents()
	mirror := map[uint64][]uint32{} // engine hash → its block's tokens
	apply := func(evs []kvevents.Event) {
		for _, e := range evs {
			switch e.Kind {
			case kvevents.BlockStored:
				if e.HasParent {
					if _, ok := mirror[e.ParentHash]; !ok {
						t.Fatalf("stored blocks under parent %x that is not cached", e.ParentHash)
					}
				}
				for i, h := range e.BlockHashes {
					mirror[h] = e.TokenIDs[i*e.BlockSize : (i+1)*e.BlockSize]
				}
			case kvevents.BlockRemoved:
				for _, h := range e.BlockHashes {
					if _, ok := mirror[h]; !ok {
						t.Fatalf("removed %x, never stored", h)
					}
					delete(mirror, h)
				}
			case kvevents.AllBlocksCleared:
				clear(mirror)
			}
		}
	}
	shared := text("system", 40)
	var reqs []*Request
	for i := range 24 {
		p := append(slices.Clone(shared), text(string(rune('a'+i%6)), 60+i*7)...)
		reqs = append(reqs, req(p, 3, 0))
	}
	for _, r := range reqs {
		if err := c.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	now := t0
	stored, removed := 0, 0
	for steps := 0; !c.Idle(); steps++ {
		res := c.Step(now, 1)
		if res.Scheduled == 0 {
			t.Fatal("stuck")
		}
		now = res.End
		for _, e := range res.KV {
			switch e.Kind {
			case kvevents.BlockStored:
				stored++
			case kvevents.BlockRemoved:
				removed++
			}
		}
		apply(res.KV)
		if got, want := slices.Sorted(maps.Keys(mirror)), slices.Sorted(maps.Keys(c.kv.cached)); !slices.Equal(got, want) {
			t.Fatalf("step %d: mirror has %d hashes, cache %d", steps, len(got), len(want))
		}
	}
	if stored == 0 || removed == 0 {
		t.Fatalf("want stores and evictions under pressure, got %d and %d", stored, removed)
	}
	// Stored tokens are the prompt's: the shared prefix's first block.
	first := BlockHashes(shared, 4, "")[0]
	if toks, ok := mirror[first]; ok && !slices.Equal(toks, TokenIDs(nil, shared[:16])) {
		t.Fatalf("first block tokens %v", toks)
	}
	apply(c.ResetPrefixCache())
	if len(mirror) != 0 || len(c.kv.cached) != 0 {
		t.Fatal("reset left cached prefixes")
	}
}

func TestKVEventsOffByDefault(t *testing.T) {
	c := NewCore(Config{})
	if err := c.Add(req(text("x", 200), 2, 0)); err != nil {
		t.Fatal(err)
	}
	if res := c.Step(t0, 1); res.KV != nil {
		t.Fatalf("events without EnableKVEvents: %v", res.KV)
	}
	if evs := c.ResetPrefixCache(); evs != nil {
		t.Fatal(evs)
	}
}
