package tokenizer

import (
	"slices"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of added_tokens: matched on the raw text before
// anything else, and always its own id.
type addedToken struct {
	content                    string
	id                         uint32
	lstrip, rstrip, singleWord bool
}

// addedTokens finds added tokens leftmost-longest, as the Rust library's
// Aho-Corasick matcher does, with a byte trie: the work at each text
// position is bounded by the longest token, not the number of tokens (a
// prompt of "<|<|<|…" against Llama 3's 256 "<|…|>" tokens costs a few
// steps per byte).
type addedTokens struct {
	toks []addedToken
	// root[b] is the node after byte b (0: none); edges maps a node and
	// the next byte to the next node; term is the token a node completes
	// (-1: none). Node 0 is unused.
	root  [256]int32
	edges map[uint64]int32
	term  []int32
}

func (a *addedTokens) add(t addedToken) {
	if slices.ContainsFunc(a.toks, func(o addedToken) bool { return o.content == t.content }) {
		return // the first entry of a content wins
	}
	a.toks = append(a.toks, t)
}

func (a *addedTokens) build() {
	a.term = []int32{-1}
	a.edges = map[uint64]int32{}
	for i, t := range a.toks {
		b := t.content[0]
		n := a.root[b]
		if n == 0 {
			n = a.node()
			a.root[b] = n
		}
		for j := 1; j < len(t.content); j++ {
			k := uint64(n)<<8 | uint64(t.content[j])
			next, ok := a.edges[k]
			if !ok {
				next = a.node()
				a.edges[k] = next
			}
			n = next
		}
		a.term[n] = int32(i)
	}
}

func (a *addedTokens) node() int32 {
	a.term = append(a.term, -1)
	return int32(len(a.term) - 1)
}

// find returns the first added token in s at or after from: the span it
// takes (with the whitespace lstrip/rstrip absorb; lstrip not before from)
// and its id; start < 0 when there is none.
func (a *addedTokens) find(s []byte, from int) (start, end int, id uint32) {
	if len(a.toks) == 0 {
		return -1, -1, 0
	}
	for i := from; i < len(s); i++ {
		n := a.root[s[i]]
		if n == 0 {
			continue
		}
		best, bestEnd := -1, 0
		for j := i + 1; ; j++ {
			if k := a.term[n]; k >= 0 {
				if t := &a.toks[k]; !t.singleWord || !wordBefore(s, i) && !wordAfter(s, j) {
					best, bestEnd = int(k), j
				}
			}
			if j == len(s) {
				break
			}
			next, ok := a.edges[uint64(n)<<8|uint64(s[j])]
			if !ok {
				break
			}
			n = next
		}
		if best < 0 {
			continue
		}
		t := &a.toks[best]
		start, end = i, bestEnd
		if t.lstrip {
			for start > from {
				r, w := utf8.DecodeLastRune(s[from:start])
				if !unicode.IsSpace(r) {
					break
				}
				start -= w
			}
		}
		if t.rstrip {
			for end < len(s) {
				r, w := utf8.DecodeRune(s[end:])
				if !unicode.IsSpace(r) {
					break
				}
				end += w
			}
		}
		return start, end, t.id
	}
	return -1, -1, 0
}

func isWord(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) || r == '_' }

func wordBefore(s []byte, i int) bool {
	r, w := utf8.DecodeLastRune(s[:i])
	return w > 0 && isWord(r)
}

func wordAfter(s []byte, i int) bool {
	r, w := utf8.DecodeRune(s[i:])
	return w > 0 && isWord(r)
}
