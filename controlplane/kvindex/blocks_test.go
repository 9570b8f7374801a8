package kvindex

import (
	"slices"
	"testing"

	"github.com/infergate/infergate/proto/kvevents"
)

func stored(parent uint64, hasParent bool, toks []uint32, hashes ...uint64) kvevents.Event {
	return kvevents.Event{Kind: kvevents.BlockStored, BlockHashes: hashes, ParentHash: parent, HasParent: hasParent, TokenIDs: toks, BlockSize: 2, Medium: "GPU"}
}

func keys(b *blocks) []uint64 {
	_, _, added, _ := b.since(cursor{}, nil, nil)
	slices.Sort(added)
	return added
}

func TestBlocksApply(t *testing.T) {
	b := newBlocks(100)
	toks := []uint32{1, 2, 3, 4, 5, 6}
	want := kvevents.AppendBlockKeys(nil, kvevents.RootKey(""), toks, 2)
	// One request's blocks arrive in two events, chained by the parent.
	b.apply(&kvevents.Batch{Events: []kvevents.Event{stored(0, false, toks[:4], 10, 11), stored(11, true, toks[4:], 12)}})
	if got := keys(b); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("keys %x, want %x", got, want)
	}
	c0 := cursor{b.gen, b.version}
	// A parent never seen: the keys cannot be computed; counted, not applied.
	b.apply(&kvevents.Batch{Events: []kvevents.Event{stored(99, true, toks[:2], 20)}})
	// CPU-offloaded copies are not GPU prefix-cache hits.
	cpu := stored(0, false, []uint32{7, 8}, 30)
	cpu.Medium = "CPU"
	b.apply(&kvevents.Batch{Events: []kvevents.Event{cpu, {Kind: kvevents.BlockRemoved, BlockHashes: []uint64{11, 55}}}})
	if b.unknown != 2 || len(b.byHash) != 2 {
		t.Fatalf("unknown %d, %d blocks", b.unknown, len(b.byHash))
	}
	// The delta since c0 removes block 11's key only.
	_, full, added, removed := b.since(c0, nil, nil)
	if full || len(added) != 0 || !slices.Equal(removed, want[1:2]) {
		t.Fatalf("delta full=%v added %x removed %x", full, added, removed)
	}
	b.apply(&kvevents.Batch{Events: []kvevents.Event{{Kind: kvevents.AllBlocksCleared}}})
	if _, full, added, _ := b.since(c0, nil, nil); !full || len(added) != 0 || len(b.byHash) != 0 {
		t.Fatal("clear: want a full, empty index")
	}
}

func TestBlocksBoundDropsOldest(t *testing.T) {
	b := newBlocks(3)
	for i := range 10 {
		b.apply(&kvevents.Batch{Events: []kvevents.Event{stored(0, false, []uint32{uint32(i), 0}, uint64(100+i))}})
	}
	if len(b.byHash) != 3 || b.dropped != 7 {
		t.Fatalf("%d blocks, %d dropped", len(b.byHash), b.dropped)
	}
	for _, h := range []uint64{107, 108, 109} {
		if _, ok := b.byHash[h]; !ok {
			t.Fatalf("newest block %d dropped", h)
		}
	}
	if len(b.refs) != 3 {
		t.Fatalf("%d keys", len(b.refs))
	}
}

func TestBlocksSameKeyTwoHashes(t *testing.T) {
	// Two engine hashes for the same tokens (e.g. a cache_salt the gateway
	// does not key on): the key stays until both are gone.
	b := newBlocks(10)
	b.apply(&kvevents.Batch{Events: []kvevents.Event{stored(0, false, []uint32{1, 2}, 1), stored(0, false, []uint32{1, 2}, 2)}})
	b.apply(&kvevents.Batch{Events: []kvevents.Event{{Kind: kvevents.BlockRemoved, BlockHashes: []uint64{1}}}})
	if len(b.refs) != 1 {
		t.Fatal("key dropped while another block holds it")
	}
	b.apply(&kvevents.Batch{Events: []kvevents.Event{{Kind: kvevents.BlockRemoved, BlockHashes: []uint64{2}}}})
	if len(b.refs) != 0 {
		t.Fatal("key kept")
	}
}

func TestBlocksLogTrimForcesFull(t *testing.T) {
	b := newBlocks(1 << 20)
	c := cursor{b.gen, b.version}
	for i := range maxLog + 10 {
		b.apply(&kvevents.Batch{Events: []kvevents.Event{stored(0, false, []uint32{uint32(i), 1}, uint64(i+1))}})
	}
	if _, full, added, _ := b.since(c, nil, nil); !full || len(added) != maxLog+10 {
		t.Fatalf("a cursor older than the log: full=%v, %d keys", full, len(added))
	}
}
