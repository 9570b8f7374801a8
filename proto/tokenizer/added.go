package tokenizer

import (
	"bytes"
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
// Aho-Corasick matcher does: by first byte, then longest content first.
type addedTokens struct {
	toks  []addedToken
	first [256][]int32
}

func (a *addedTokens) add(t addedToken) {
	if slices.ContainsFunc(a.toks, func(o addedToken) bool { return o.content == t.content }) {
		return // the first entry of a content wins
	}
	a.toks = append(a.toks, t)
}

func (a *addedTokens) build() {
	for i, t := range a.toks {
		b := t.content[0]
		a.first[b] = append(a.first[b], int32(i))
	}
	for b := range a.first {
		slices.SortStableFunc(a.first[b], func(x, y int32) int { return len(a.toks[y].content) - len(a.toks[x].content) })
	}
}

// find returns the first added token in s at or after from: the span it
// takes (with the whitespace lstrip/rstrip absorb; lstrip not before from)
// and its id; start < 0 when there is none.
func (a *addedTokens) find(s []byte, from int) (start, end int, id uint32) {
	if len(a.toks) == 0 {
		return -1, -1, 0
	}
	for i := from; i < len(s); i++ {
		cands := a.first[s[i]]
		for _, k := range cands {
			t := &a.toks[k]
			if !bytes.HasPrefix(s[i:], []byte(t.content)) {
				continue
			}
			e := i + len(t.content)
			if t.singleWord && (wordBefore(s, i) || wordAfter(s, e)) {
				continue
			}
			start, end = i, e
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
