// Package kvindex is the proxy's side of precise prefix matching: the
// block index of each pool's model servers as the control plane streams it
// (learned from the servers' KV-cache events), the token ids of a request's
// prompt, and the match of the prompt's block chain against the index —
// how many leading tokens each candidate holds — which it answers the
// picker as a picker.PrefixSource.
package kvindex

import (
	"math/bits"
	"slices"
	"sync"

	kvindexv1 "github.com/infergate/infergate/proto/kvindex/v1"
)

// MaxServers is how many model servers of one pool are indexed; servers
// beyond it are left out (the picker estimates their prefixes itself).
const MaxServers = 256

const maxWords = MaxServers / 64

// Pool is one pool's block index: for every block key, the set of servers
// holding it as a bit mask, so matching a prompt walks its chain once for
// all candidates. Safe for concurrent use: updates take the write lock,
// matches the read lock.
type Pool struct {
	mu        sync.RWMutex
	name      string
	blockSize int
	adapters  []string
	slots     map[string]int // endpoint → slot
	endpoints []string       // slot → endpoint ("" free)
	sizes     []int          // slot → its server's block size
	counts    []int          // slot → blocks it holds
	words     int            // mask words per key
	keyPos    map[uint64]int32
	masks     []uint64
	freePos   []int32
	over      int // servers not indexed (beyond MaxServers)
}

func newPool(name string) *Pool {
	return &Pool{name: name, slots: map[string]int{}, words: 1, keyPos: map[uint64]int32{}}
}

// apply applies one streamed change of the pool.
func (p *Pool) apply(pb *kvindexv1.PoolBlocks) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.adapters = append(p.adapters[:0], pb.GetAdapters()...)
	for _, ep := range pb.GetRemovedServers() {
		if s, ok := p.slots[ep]; ok {
			p.clearSlot(s)
			delete(p.slots, ep)
			p.endpoints[s], p.sizes[s], p.counts[s] = "", 0, 0
		}
	}
	for _, sb := range pb.GetServers() {
		s, ok := p.slot(sb.GetEndpoint())
		if !ok {
			continue
		}
		if sb.GetReplace() {
			p.clearSlot(s)
		}
		if bs := int(sb.GetBlockSize()); bs > 0 {
			p.sizes[s] = bs
			if p.blockSize == 0 {
				p.blockSize = bs
			}
		}
		for _, k := range sb.GetRemoved() {
			p.clearBit(k, s)
		}
		for _, k := range sb.GetAdded() {
			p.setBit(k, s)
		}
	}
	// The pool's block size is its servers' (the first one known when they
	// differ; servers of another size are not matched).
	if p.blockSize != 0 && !slices.Contains(p.sizes, p.blockSize) {
		p.blockSize = 0
		for _, bs := range p.sizes {
			if bs > 0 {
				p.blockSize = bs
				break
			}
		}
	}
}

// slot returns ep's slot, assigning a free one (false beyond MaxServers).
func (p *Pool) slot(ep string) (int, bool) {
	if s, ok := p.slots[ep]; ok {
		return s, true
	}
	s := slices.Index(p.endpoints, "")
	if s < 0 {
		if len(p.endpoints) == MaxServers {
			p.over++
			return 0, false
		}
		s = len(p.endpoints)
		p.endpoints = append(p.endpoints, "")
		p.sizes = append(p.sizes, 0)
		p.counts = append(p.counts, 0)
	}
	if need := s/64 + 1; need > p.words {
		p.grow(need)
	}
	p.slots[ep] = s
	p.endpoints[s] = ep
	return s, true
}

// grow widens every key's mask to words.
func (p *Pool) grow(words int) {
	masks := make([]uint64, len(p.masks)/p.words*words)
	for k, pos := range p.keyPos {
		copy(masks[int(pos)*words:], p.masks[int(pos)*p.words:int(pos+1)*p.words])
		p.keyPos[k] = pos
	}
	p.masks, p.words = masks, words
}

func (p *Pool) setBit(k uint64, s int) {
	pos, ok := p.keyPos[k]
	if !ok {
		if n := len(p.freePos); n > 0 {
			pos = p.freePos[n-1]
			p.freePos = p.freePos[:n-1]
		} else {
			pos = int32(len(p.masks) / p.words)
			p.masks = append(p.masks, make([]uint64, p.words)...)
		}
		p.keyPos[k] = pos
	}
	w := &p.masks[int(pos)*p.words+s/64]
	if *w&(1<<(s%64)) == 0 {
		*w |= 1 << (s % 64)
		p.counts[s]++
	}
}

func (p *Pool) clearBit(k uint64, s int) {
	pos, ok := p.keyPos[k]
	if !ok {
		return
	}
	m := p.masks[int(pos)*p.words : int(pos+1)*p.words]
	if m[s/64]&(1<<(s%64)) == 0 {
		return
	}
	m[s/64] &^= 1 << (s % 64)
	p.counts[s]--
	for _, w := range m {
		if w != 0 {
			return
		}
	}
	delete(p.keyPos, k)
	p.freePos = append(p.freePos, pos)
}

// clearSlot removes every block of slot s (a scan: only on a server's
// replacement or removal).
func (p *Pool) clearSlot(s int) {
	if p.counts[s] == 0 {
		return
	}
	for k := range p.keyPos {
		p.clearBit(k, s)
	}
}

// Match writes into out[i] how many leading blocks of keys the server at
// endpoints[i] holds, or -1 where the index has no such server (or one of
// another block size). keys must be the chain of the pool's BlockSize. It
// does not allocate.
func (p *Pool) Match(keys []uint64, endpoints func(i int) string, out []int) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var alive [maxWords]uint64
	var slotOf [MaxServers]int16
	cands := min(len(out), MaxServers)
	for i := range out {
		out[i] = -1
	}
	for i := range cands {
		slotOf[i] = -1
		s, ok := p.slots[endpoints(i)]
		if !ok || p.sizes[s] != p.blockSize {
			continue
		}
		slotOf[i] = int16(s)
		alive[s/64] |= 1 << (s % 64)
	}
	// depth[s] is where server s's chain breaks: the blocks it holds.
	var depth [MaxServers]int32
	words := p.words
	live := false
	for w := range words {
		live = live || alive[w] != 0
	}
	for i, k := range keys {
		if !live {
			break
		}
		pos, ok := p.keyPos[k]
		live = false
		for w := range words {
			if alive[w] == 0 {
				continue
			}
			m := uint64(0)
			if ok {
				m = p.masks[int(pos)*words+w]
			}
			for gone := alive[w] &^ m; gone != 0; gone &= gone - 1 {
				depth[w*64+bits.TrailingZeros64(gone)] = int32(i)
			}
			alive[w] &= m
			live = live || alive[w] != 0
		}
	}
	// Servers still alive hold the whole chain.
	for w := range words {
		for a := alive[w]; a != 0; a &= a - 1 {
			depth[w*64+bits.TrailingZeros64(a)] = int32(len(keys))
		}
	}
	for i := range cands {
		if slotOf[i] >= 0 {
			out[i] = int(depth[slotOf[i]])
		}
	}
}

// BlockSize is the pool's servers' tokens per block (0: not known yet).
func (p *Pool) BlockSize() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.blockSize
}

// IsAdapter reports whether model is an adapter the pool's servers hold
// blocks of (its chain starts from the adapter's root).
func (p *Pool) IsAdapter(model string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Contains(p.adapters, model)
}

// ServerBlocks is one server's share of the index (admin API).
type ServerBlocks struct {
	Endpoint  string `json:"endpoint"`
	Blocks    int    `json:"blocks"`
	BlockSize int    `json:"blockSize"`
}

// Servers lists the indexed servers and their block counts.
func (p *Pool) Servers() []ServerBlocks {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []ServerBlocks
	for s, ep := range p.endpoints {
		if ep != "" {
			out = append(out, ServerBlocks{ep, p.counts[s], p.sizes[s]})
		}
	}
	slices.SortFunc(out, func(a, b ServerBlocks) int {
		if a.Endpoint < b.Endpoint {
			return -1
		}
		return 1
	})
	return out
}

// Keys is the number of distinct block keys indexed.
func (p *Pool) Keys() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.keyPos)
}
