package engine

// kvCache is a vLLM-style paged KV block pool with prefix caching.
//
// Blocks hold blockSize tokens. A block in use has ref > 0. Free blocks sit in
// a queue ordered by eviction priority (head is evicted first); a free block
// can still carry a prefix hash and be "hit" by a later request, which takes it
// out of the queue again. A finished request returns its blocks tail first, so
// within one request the tail blocks are evicted before the head (a shared
// prefix survives longest) and across requests the least recently used go first.
type kvCache struct {
	blockSize int
	blocks    []kvBlock
	// free queue as an intrusive doubly linked list of block indices; -1 = none.
	head, tail int
	numFree    int
	cached     map[uint64]int // prefix hash → block index
	// events collects KV events while on (see kvevents.go); nil when off.
	events *kvEventLog
}

type kvBlock struct {
	ref        int
	hash       uint64
	hashed     bool
	prev, next int
	inFree     bool
}

func newKVCache(numBlocks, blockSize int) *kvCache {
	c := &kvCache{
		blockSize: blockSize,
		blocks:    make([]kvBlock, numBlocks),
		head:      -1,
		tail:      -1,
		cached:    make(map[uint64]int),
	}
	for i := range c.blocks {
		c.pushTail(i)
	}
	return c
}

func (c *kvCache) blocksFor(tokens int) int {
	return (tokens + c.blockSize - 1) / c.blockSize
}

// usage is the fraction of blocks held by live requests; cached-but-free
// blocks count as free, as in vLLM's kv_cache_usage_perc.
func (c *kvCache) usage() float64 {
	if len(c.blocks) == 0 {
		return 0
	}
	return float64(len(c.blocks)-c.numFree) / float64(len(c.blocks))
}

func (c *kvCache) pushTail(i int) {
	b := &c.blocks[i]
	b.prev, b.next, b.inFree = c.tail, -1, true
	if c.tail >= 0 {
		c.blocks[c.tail].next = i
	} else {
		c.head = i
	}
	c.tail = i
	c.numFree++
}

func (c *kvCache) unlink(i int) {
	b := &c.blocks[i]
	if b.prev >= 0 {
		c.blocks[b.prev].next = b.next
	} else {
		c.head = b.next
	}
	if b.next >= 0 {
		c.blocks[b.next].prev = b.prev
	} else {
		c.tail = b.prev
	}
	b.prev, b.next, b.inFree = -1, -1, false
	c.numFree--
}

// lookup returns the blocks of the longest cached prefix of hashes, at most max.
func (c *kvCache) lookup(hashes []uint64, max int) []int {
	var hits []int
	for i, h := range hashes {
		if i >= max {
			break
		}
		b, ok := c.cached[h]
		if !ok {
			break
		}
		hits = append(hits, b)
	}
	return hits
}

// canAdmit reports whether a request can take hits and still get enough new
// blocks to hold tokens in total.
func (c *kvCache) canAdmit(hits []int, tokens int) bool {
	avail := c.numFree
	for _, b := range hits {
		if c.blocks[b].ref == 0 {
			avail-- // a cached free block is taken by the hit, not available for new data
		}
	}
	return c.blocksFor(tokens)-len(hits) <= avail
}

// take pins hit blocks for a request.
func (c *kvCache) take(hits []int) {
	for _, b := range hits {
		if c.blocks[b].ref == 0 {
			c.unlink(b)
		}
		c.blocks[b].ref++
	}
}

// grow appends new blocks to owned until it covers tokens; it fails without
// side effects when not enough blocks are free.
func (c *kvCache) grow(owned []int, tokens int) ([]int, bool) {
	need := c.blocksFor(tokens) - len(owned)
	if need <= 0 {
		return owned, true
	}
	if need > c.numFree {
		return owned, false
	}
	for range need {
		i := c.head
		c.unlink(i)
		b := &c.blocks[i]
		if b.hashed {
			// Evicting: the prefix this block held is gone from the cache.
			if c.cached[b.hash] == i {
				delete(c.cached, b.hash)
				c.evicted(b.hash)
			}
			b.hashed = false
		}
		b.ref = 1
		owned = append(owned, i)
	}
	return owned, true
}

// register publishes the hash of a fully computed prompt block so later
// requests can hit it. If another request already published the same prefix,
// this block stays private (vLLM keeps the first copy).
func (c *kvCache) register(block int, hash uint64) bool {
	if _, dup := c.cached[hash]; dup {
		return false
	}
	b := &c.blocks[block]
	b.hash, b.hashed = hash, true
	c.cached[hash] = block
	return true
}

// release returns a request's blocks, tail first.
func (c *kvCache) release(owned []int) {
	for i := len(owned) - 1; i >= 0; i-- {
		b := owned[i]
		c.blocks[b].ref--
		if c.blocks[b].ref == 0 {
			c.pushTail(b)
		}
	}
}

// cachedBlocks counts blocks currently holding a published prefix.
func (c *kvCache) cachedBlocks() int { return len(c.cached) }
