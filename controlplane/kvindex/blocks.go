package kvindex

import (
	"strings"

	"github.com/infergate/infergate/proto/kvevents"
)

// blocks is one model server's index: the engine's block hashes mapped to
// the gateway's keys (kvevents.AppendBlockKeys over the blocks' tokens),
// and a log of key changes that streams to proxies send as deltas. Not
// safe for concurrent use; server guards it.
type blocks struct {
	max       int
	blockSize int
	byHash    map[uint64]uint64 // engine hash → key
	refs      map[uint64]int32  // key → engine hashes holding it
	// fifo holds engine hashes in store order, for dropping the oldest
	// beyond max; entries no longer in byHash are skipped (and compacted).
	fifo     []uint64
	fifoHead int
	adapters map[string]struct{}

	// gen changes when the index is replaced wholesale (reset): a stream
	// must then send every key again. version counts changes; log holds
	// those after logBase (older ones were trimmed).
	gen, version, logBase uint64
	log                   []change

	unknown, dropped, otherSize int64
	scratch                     []uint64
}

type change struct {
	version uint64
	key     uint64
	added   bool
}

// maxLog bounds the change log; a stream further behind gets a reset.
const maxLog = 1 << 16

func newBlocks(max int) *blocks {
	return &blocks{max: max, byHash: map[uint64]uint64{}, refs: map[uint64]int32{}, adapters: map[string]struct{}{}, gen: 1}
}

// apply applies one decoded batch.
func (b *blocks) apply(batch *kvevents.Batch) {
	for i := range batch.Events {
		e := &batch.Events[i]
		switch e.Kind {
		case kvevents.BlockStored:
			b.store(e)
		case kvevents.BlockRemoved:
			if !onGPU(e.Medium) {
				continue
			}
			for _, h := range e.BlockHashes {
				if !b.remove(h) {
					b.unknown++
				}
			}
		case kvevents.AllBlocksCleared:
			b.reset()
		}
	}
}

// onGPU: the index holds what a request can reuse without a transfer;
// blocks offloaded to CPU or disk are announced with another medium.
func onGPU(medium string) bool { return medium == "" || strings.EqualFold(medium, "gpu") }

func (b *blocks) store(e *kvevents.Event) {
	if !onGPU(e.Medium) {
		return
	}
	if b.blockSize == 0 {
		b.blockSize = e.BlockSize
	}
	if e.BlockSize != b.blockSize {
		// A second KV-cache group (hybrid models) with its own block size:
		// one chain per server is kept, the first block size seen.
		b.otherSize++
		return
	}
	parent := kvevents.RootKey(e.LoRAName)
	if e.HasParent {
		k, ok := b.byHash[e.ParentHash]
		if !ok {
			// Its parent was stored before we listened (or dropped): the
			// keys of these blocks cannot be computed.
			b.unknown++
			return
		}
		parent = k
	}
	if e.LoRAName != "" {
		b.adapters[e.LoRAName] = struct{}{}
	}
	b.scratch = kvevents.AppendBlockKeys(b.scratch[:0], parent, e.TokenIDs, e.BlockSize)
	for i, h := range e.BlockHashes {
		k := b.scratch[i]
		if old, ok := b.byHash[h]; ok {
			if old == k {
				continue
			}
			b.unref(old)
		} else {
			b.fifo = append(b.fifo, h)
		}
		b.byHash[h] = k
		b.ref(k)
	}
	for len(b.byHash) > b.max {
		h := b.fifo[b.fifoHead]
		b.fifoHead++
		if b.remove(h) {
			b.dropped++
		}
	}
	if b.fifoHead > len(b.fifo)/2 && b.fifoHead > 1024 {
		b.compactFIFO()
	}
}

func (b *blocks) compactFIFO() {
	live := b.fifo[:0]
	for _, h := range b.fifo[b.fifoHead:] {
		if _, ok := b.byHash[h]; ok {
			live = append(live, h)
		}
	}
	b.fifo, b.fifoHead = live, 0
}

func (b *blocks) remove(h uint64) bool {
	k, ok := b.byHash[h]
	if !ok {
		return false
	}
	delete(b.byHash, h)
	b.unref(k)
	if len(b.byHash) == 0 {
		b.fifo, b.fifoHead = b.fifo[:0], 0
	}
	return true
}

func (b *blocks) ref(k uint64) {
	b.refs[k]++
	if b.refs[k] == 1 {
		b.record(k, true)
	}
}

func (b *blocks) unref(k uint64) {
	if b.refs[k]--; b.refs[k] <= 0 {
		delete(b.refs, k)
		b.record(k, false)
	}
}

func (b *blocks) record(k uint64, added bool) {
	b.version++
	b.log = append(b.log, change{b.version, k, added})
	if len(b.log) > maxLog {
		drop := len(b.log) - maxLog/2
		b.logBase = b.log[drop-1].version
		b.log = append(b.log[:0], b.log[drop:]...)
	}
}

// reset forgets every block: streams send the (empty) index anew.
func (b *blocks) reset() {
	clear(b.byHash)
	clear(b.refs)
	clear(b.adapters)
	b.fifo, b.fifoHead = b.fifo[:0], 0
	b.gen++
	b.version++
	b.logBase = b.version
	b.log = b.log[:0]
}

// cursor is how far a stream has sent a server's index.
type cursor struct{ gen, version uint64 }

// since appends to added/removed what changed after c and returns the new
// cursor; full is true when the stream must replace the server's keys with
// added (c is from another generation or older than the log).
func (b *blocks) since(c cursor, added, removed []uint64) (cursor, bool, []uint64, []uint64) {
	now := cursor{b.gen, b.version}
	if c.gen != b.gen || c.version < b.logBase {
		for k := range b.refs {
			added = append(added, k)
		}
		return now, true, added, removed
	}
	if c.version == b.version {
		return now, false, added, removed
	}
	// Net effect per key: the last change wins.
	net := map[uint64]bool{}
	for _, ch := range b.log {
		if ch.version > c.version {
			net[ch.key] = ch.added
		}
	}
	for k, a := range net {
		if a {
			added = append(added, k)
		} else {
			removed = append(removed, k)
		}
	}
	return now, false, added, removed
}
