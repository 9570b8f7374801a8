package tokenizer

import (
	"golang.org/x/text/unicode/norm"
)

// scratch is one Encode's working memory, pooled.
type scratch struct {
	text  []byte
	syms  []uint32
	ranks []uint32
	nodes []node
	heap  []cand
	// recent caches short pieces' single-token lookups: text repeats its
	// words, and the vocabulary map is large enough to miss the CPU's
	// caches on every lookup (~2x faster on prose).
	recent *[recentSlots]recentPiece
}

const recentSlots = 1 << 12

// recentPiece is a cached piece of up to 15 bytes (n = 0: empty slot).
type recentPiece struct {
	b  [15]byte
	n  uint8
	id uint32
}

// recentSlot hashes a short piece to its slot.
func recentSlot(b []byte) uint32 {
	h := uint32(len(b)) * 0x9E3779B1
	for _, c := range b {
		h = (h ^ uint32(c)) * 0x01000193
	}
	return h >> (32 - 12)
}

// Encode appends the token ids of text to dst. special adds the
// post-processor's tokens around it (Llama 3's <|begin_of_text|>), as a
// model server does for a completion prompt; a chat template rendered
// into text carries its special tokens itself (added tokens in the text
// are always matched).
func (t *Tokenizer) Encode(dst []uint32, text []byte, special bool) []uint32 {
	sc := t.bufs.Get().(*scratch)
	defer t.bufs.Put(sc)
	if special {
		dst = append(dst, t.prefix...)
	}
	for from := 0; from < len(text); {
		start, end, id := t.added.find(text, from)
		if start < 0 {
			dst = t.segment(dst, text[from:], sc)
			break
		}
		dst = t.segment(dst, text[from:start], sc)
		dst = append(dst, id)
		from = end
	}
	if special {
		dst = append(dst, t.suffix...)
	}
	return dst
}

// segment tokenizes text between added tokens.
func (t *Tokenizer) segment(dst []uint32, s []byte, sc *scratch) []uint32 {
	if len(s) == 0 {
		return dst
	}
	if t.nfc && !norm.NFC.IsNormal(s) {
		sc.text = norm.NFC.Append(sc.text[:0], s...)
		s = sc.text
	}
	if t.prefixSpace && s[0] != ' ' {
		buf := make([]byte, 0, len(s)+1)
		s = append(append(buf, ' '), s...)
	}
	for i := 0; i < len(s); {
		j := t.split.next(s, i)
		dst = t.word(dst, s[i:j], sc)
		i = j
	}
	return dst
}

// smallWord: pieces up to this long merge by scanning an array of pair
// ranks; longer ones through a heap (a page of CJK text can be one piece).
const smallWord = 128

const noRank = ^uint32(0)

// word appends the BPE tokens of one piece.
func (t *Tokenizer) word(dst []uint32, b []byte, sc *scratch) []uint32 {
	if len(b) == 1 {
		return append(dst, t.byteID[b[0]])
	}
	if t.ignoreMerges {
		if len(b) < 16 {
			if sc.recent == nil {
				sc.recent = new([recentSlots]recentPiece)
			}
			e := &sc.recent[recentSlot(b)]
			if int(e.n) == len(b) && string(e.b[:e.n]) == string(b) {
				return append(dst, e.id)
			}
			if id, ok := t.vocab[string(b)]; ok {
				copy(e.b[:], b)
				e.n, e.id = uint8(len(b)), id
				return append(dst, id)
			}
		} else if id, ok := t.vocab[string(b)]; ok {
			return append(dst, id)
		}
	}
	if len(b) > smallWord {
		return t.wordHeap(dst, b, sc)
	}
	syms, ranks := sc.syms[:0], sc.ranks[:0]
	for _, c := range b {
		syms = append(syms, t.byteID[c])
	}
	for i := 0; i+1 < len(syms); i++ {
		ranks = append(ranks, t.rank(syms[i], syms[i+1]))
	}
	for {
		bi, best := -1, noRank
		for i, r := range ranks {
			if r < best {
				bi, best = i, r
			}
		}
		if bi < 0 {
			break
		}
		syms[bi] = t.merges[pairKey(syms[bi], syms[bi+1])].id
		syms = append(syms[:bi+1], syms[bi+2:]...)
		ranks = append(ranks[:bi], ranks[bi+1:]...)
		if bi > 0 {
			ranks[bi-1] = t.rank(syms[bi-1], syms[bi])
		}
		if bi < len(ranks) {
			ranks[bi] = t.rank(syms[bi], syms[bi+1])
		}
	}
	sc.syms, sc.ranks = syms, ranks
	return append(dst, syms...)
}

func (t *Tokenizer) rank(a, b uint32) uint32 {
	if m, ok := t.merges[pairKey(a, b)]; ok {
		return m.rank
	}
	return noRank
}

// node is a symbol of a long piece, linked to its neighbours.
type node struct {
	id         uint32
	prev, next int32
}

// cand is a possible merge of the symbols at pos and its next.
type cand struct {
	rank, id    uint32
	pos         int32
	left, right uint32
}

func (c cand) less(o cand) bool { return c.rank < o.rank || c.rank == o.rank && c.pos < o.pos }

const dead = ^uint32(0)

// wordHeap merges lowest rank first (leftmost among equals) with a heap
// of candidate pairs, skipping candidates whose symbols changed.
func (t *Tokenizer) wordHeap(dst []uint32, b []byte, sc *scratch) []uint32 {
	nodes, h := sc.nodes[:0], sc.heap[:0]
	for i, c := range b {
		nodes = append(nodes, node{id: t.byteID[c], prev: int32(i - 1), next: int32(i + 1)})
	}
	nodes[len(nodes)-1].next = -1
	push := func(pos int32) {
		n := nodes[pos]
		if n.next < 0 {
			return
		}
		r := nodes[n.next].id
		if m, ok := t.merges[pairKey(n.id, r)]; ok {
			h = heapPush(h, cand{rank: m.rank, id: m.id, pos: pos, left: n.id, right: r})
		}
	}
	for i := range nodes {
		push(int32(i))
	}
	for len(h) > 0 {
		var c cand
		c, h = heapPop(h)
		n := &nodes[c.pos]
		if n.id != c.left || n.next < 0 || nodes[n.next].id != c.right {
			continue
		}
		r := n.next
		n.id, n.next = c.id, nodes[r].next
		nodes[r].id = dead
		if n.next >= 0 {
			nodes[n.next].prev = c.pos
		}
		if n.prev >= 0 {
			push(n.prev)
		}
		push(c.pos)
	}
	for i := int32(0); i >= 0; i = nodes[i].next {
		dst = append(dst, nodes[i].id)
	}
	sc.nodes, sc.heap = nodes, h
	return dst
}

func heapPush(h []cand, c cand) []cand {
	h = append(h, c)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h[i].less(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

func heapPop(h []cand) (cand, []cand) {
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h[l].less(h[m]) {
			m = l
		}
		if r < len(h) && h[r].less(h[m]) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	return top, h
}
