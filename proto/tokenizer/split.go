package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// pattern is a pre-tokenizer split pattern, run by a scanner equivalent to
// its regular expression (leftmost alternative first, greedy, with the
// look-ahead's backtracking written out).
type pattern uint8

const (
	// patternNone: the segment is one piece (ByteLevel without its regex).
	patternNone pattern = iota
	// patternGPT2 is ByteLevel's own split (GPT-2, RoBERTa, Phi-2 ...).
	patternGPT2
	// patternCL100K is cl100k_base's, which Llama 3 and many more use.
	patternCL100K
	// patternQwen2 is cl100k's with single digits (Qwen 2, 2.5, 3).
	patternQwen2
)

// knownPatterns are the Split regexes the scanners implement, as they
// appear in tokenizer.json files (after JSON decoding).
var knownPatterns = map[string]pattern{
	`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`:                                          patternGPT2,
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: patternCL100K,
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`:      patternQwen2,
}

// Rune classes of the patterns: \p{L}, \p{N}, \s (Unicode White_Space),
// and other (punctuation, symbols, controls, invalid UTF-8).
const (
	classOther uint8 = iota
	classL
	classN
	classS
)

var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for r := range rune(utf8.RuneSelf) {
		t[r] = classOf(r)
	}
	return t
}()

func classOf(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return classL
	case unicode.IsNumber(r):
		return classN
	case unicode.IsSpace(r):
		return classS
	}
	return classOther
}

// at returns the rune at s[i], its width and class.
func at(s []byte, i int) (rune, int, uint8) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1, asciiClass[c]
	}
	r, w := utf8.DecodeRune(s[i:])
	return r, w, classOf(r)
}

// run returns the end of the run of class c starting at i.
func run(s []byte, i int, c uint8) int {
	for i < len(s) {
		_, w, k := at(s, i)
		if k != c {
			break
		}
		i += w
	}
	return i
}

// next returns the end of the piece starting at s[i] (i < len(s)).
func (p pattern) next(s []byte, i int) int {
	switch p {
	case patternGPT2:
		return nextGPT2(s, i)
	case patternCL100K:
		return nextCL100K(s, i, 3)
	case patternQwen2:
		return nextCL100K(s, i, 1)
	}
	return len(s)
}

// contraction returns the length of the contraction suffix ('s 't 're 've
// 'm 'll 'd) after the apostrophe at s[i-1], 0 if none; fold matches any
// case (as (?i:...) does, where 's' also matches 'ſ', U+017F).
func contraction(s []byte, i int, fold bool) int {
	lower := func(j int) (rune, int) {
		if j >= len(s) {
			return 0, 0
		}
		r, w, _ := at(s, j)
		if fold {
			if r == 'ſ' {
				r = 's'
			} else if 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			}
		}
		return r, w
	}
	r1, w1 := lower(i)
	switch r1 {
	case 's', 't', 'm', 'd':
		return w1
	case 'r', 'v', 'l':
		r2, w2 := lower(i + w1)
		if (r1 == 'r' || r1 == 'v') && r2 == 'e' || r1 == 'l' && r2 == 'l' {
			return w1 + w2
		}
	}
	return 0
}

// space ends a run of whitespace at s[i]: \s+(?!\S) takes all of it at the
// end of the text, else all but its last rune; \s+ takes it all when that
// leaves nothing. nl: \s*[\r\n]+ comes first and takes the run up to its
// last line break.
func space(s []byte, i int, nl bool) int {
	end, last, lastNL := i, i, -1
	for end < len(s) {
		r, w, k := at(s, end)
		if k != classS {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = end
		}
		last = end
		end += w
	}
	switch {
	case nl && lastNL >= 0:
		return lastNL + 1
	case end == len(s):
		return end
	case last > i:
		return last
	}
	return end
}

// nextGPT2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func nextGPT2(s []byte, i int) int {
	r, w, c := at(s, i)
	if r == '\'' {
		if n := contraction(s, i+1, false); n > 0 {
			return i + 1 + n
		}
	}
	j := i
	if r == ' ' && i+1 < len(s) {
		j = i + 1
		_, w, c = at(s, j)
	}
	switch c {
	case classL, classN, classOther:
		return run(s, j+w, c)
	}
	return space(s, i, false)
}

// nextCL100K: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,digits}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func nextCL100K(s []byte, i int, digits int) int {
	r, w, c := at(s, i)
	if r == '\'' {
		if n := contraction(s, i+1, true); n > 0 {
			return i + 1 + n
		}
	}
	switch c {
	case classL:
		return run(s, i+w, classL)
	case classN:
		j := i + w
		for k := 1; k < digits && j < len(s); k++ {
			_, w2, c2 := at(s, j)
			if c2 != classN {
				break
			}
			j += w2
		}
		return j
	}
	// One rune that is neither a letter, a digit nor a line break, then letters.
	if r != '\r' && r != '\n' && i+w < len(s) {
		if _, w2, c2 := at(s, i+w); c2 == classL {
			return run(s, i+w+w2, classL)
		}
	}
	// An optional space, then punctuation, then line breaks.
	j := i
	if r == ' ' && i+1 < len(s) {
		j = i + 1
		_, w, c = at(s, j)
	}
	if c == classOther {
		j = run(s, j+w, classOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	return space(s, i, true)
}
