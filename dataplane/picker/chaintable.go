package picker

import (
	"math/bits"
	"math/rand/v2"
)

// chainTable is the chain index's LRU map from chain key to entry, with
// simplelru's semantics (get and add make a key the newest, peek and
// contains do not; adding past the limit evicts the oldest key).
//
// A long prompt's pick looks up its ~60 keys twice (match, then record):
// with simplelru that was a fifth of the pick, in the map's own hashing
// and probing and in its list of heap elements. Chain keys are already
// uniform hashes, so one multiply places a key in an open-addressed
// table that holds the key beside its node's index (a miss reads one
// slot); the recency list is a slice of 16-byte links apart from the
// 128-byte entries, so moving a prompt's keys to the front touches links
// that stay in cache; nothing is allocated per key once the table has
// grown to its limit (node indexes are int32: the profile allows at most
// 4M keys).
type chainTable struct {
	// limit is the most keys held.
	limit int
	// seed is xored into keys before placing them: the other proxies'
	// keys arrive through the fleet exchange, and a table whose layout
	// they cannot predict cannot be flooded into long probe runs.
	seed uint64
	// slots is the open-addressed table (linear probing; a power of two
	// at least twice the keys held); shift places a key in it.
	slots []chainSlot
	shift uint8
	// Node n is links[n] (its key and place in the recency list) and
	// entries[n]. links[0] is the list's sentinel: its next is the
	// newest key's node, its prev the oldest's.
	links   []chainLink
	entries []chainEntry
	// free holds the indexes of removed nodes.
	free []int32
	// n is the number of keys held.
	n int
}

// chainSlot is a key and its node's index (0: an empty slot).
type chainSlot struct {
	key  uint64
	node int32
}

// chainLink is a held key and its place in the recency list.
type chainLink struct {
	key        uint64
	prev, next int32
}

// minChainSlots is the table's first size: a pool's index starts small
// and doubles as it fills (only then does recording a prompt allocate).
const minChainSlots = 1 << 10

func newChainTable(limit int) *chainTable {
	t := &chainTable{limit: limit, seed: rand.Uint64(),
		links: make([]chainLink, 1, minChainSlots/2), entries: make([]chainEntry, 1, minChainSlots/2)}
	t.resize(minChainSlots)
	return t
}

// home is key's first slot.
func (t *chainTable) home(key uint64) int {
	return int(((key ^ t.seed) * 0x9e3779b97f4a7c15) >> t.shift) // Fibonacci hashing
}

// find returns key's slot and node, or the empty slot where a search
// for it ended and node 0.
func (t *chainTable) find(key uint64) (slot int, node int32) {
	mask := len(t.slots) - 1
	for i := t.home(key); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s.node == 0 || s.key == key {
			return i, s.node
		}
	}
}

// peek returns key's entry, nil when key is not held.
func (t *chainTable) peek(key uint64) *chainEntry {
	if _, n := t.find(key); n != 0 {
		return &t.entries[n]
	}
	return nil
}

// contains reports whether key is held.
func (t *chainTable) contains(key uint64) bool {
	_, n := t.find(key)
	return n != 0
}

// get returns key's entry and makes key the newest, or nil when key is
// not held.
func (t *chainTable) get(key uint64) *chainEntry {
	_, n := t.find(key)
	if n == 0 {
		return nil
	}
	t.unlink(n)
	t.pushFront(n)
	return &t.entries[n]
}

// add holds key (not held yet) as the newest key with an empty entry and
// returns the entry; past the limit the oldest key goes. The entry is
// valid until the next add.
func (t *chainTable) add(key uint64) *chainEntry {
	var n int32
	switch {
	case t.n >= t.limit:
		n = t.links[0].prev
		t.remove(n)
		n = t.free[len(t.free)-1]
		t.free = t.free[:len(t.free)-1]
	case len(t.free) > 0:
		n = t.free[len(t.free)-1]
		t.free = t.free[:len(t.free)-1]
	default:
		if len(t.links) == cap(t.links) {
			// Grow by doubling, but never past the limit: a full index of
			// the default size is ~17 MB of entries.
			size := min(2*cap(t.links), t.limit+1)
			t.links = append(make([]chainLink, 0, size), t.links...)
			t.entries = append(make([]chainEntry, 0, size), t.entries...)
		}
		n = int32(len(t.links))
		t.links = append(t.links, chainLink{})
		t.entries = append(t.entries, chainEntry{})
	}
	if 2*(t.n+1) > len(t.slots) {
		t.resize(2 * len(t.slots))
	}
	i, _ := t.find(key)
	t.slots[i] = chainSlot{key: key, node: n}
	t.links[n].key = key
	t.n++
	t.pushFront(n)
	return &t.entries[n]
}

// drop removes key if held.
func (t *chainTable) drop(key uint64) {
	if _, n := t.find(key); n != 0 {
		t.remove(n)
	}
}

// remove takes node n's key out of the table and list, clears its entry
// and frees the node.
func (t *chainTable) remove(n int32) {
	i, _ := t.find(t.links[n].key)
	t.deleteSlot(i)
	t.unlink(n)
	t.entries[n] = chainEntry{}
	t.free = append(t.free, n)
	t.n--
}

// deleteSlot empties slot i, moving later keys of its probe run back so
// that every key stays reachable from its home (backward-shift deletion:
// no tombstones to slow later probes).
func (t *chainTable) deleteSlot(i int) {
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].node != 0; j = (j + 1) & mask {
		// The key at j may fill i if i lies on its probe path, from its
		// home to j.
		if (j-t.home(t.slots[j].key))&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = chainSlot{}
}

func (t *chainTable) unlink(n int32) {
	l := t.links[n]
	t.links[l.prev].next = l.next
	t.links[l.next].prev = l.prev
}

func (t *chainTable) pushFront(n int32) {
	first := t.links[0].next
	t.links[n].prev, t.links[n].next = 0, first
	t.links[first].prev = n
	t.links[0].next = n
}

// resize rebuilds the slots with size slots (a power of two).
func (t *chainTable) resize(size int) {
	old := t.slots
	t.slots = make([]chainSlot, size)
	t.shift = uint8(64 - bits.Len(uint(size-1)))
	for _, s := range old {
		if s.node != 0 {
			i, _ := t.find(s.key)
			t.slots[i] = s
		}
	}
}
