package tokenizer

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
)

// The split scanners are checked against a backtracking regex engine
// running the patterns themselves: regexp2's interpreter, which matches
// like the engines model servers run them (Oniguruma in Hugging Face
// tokenizers' Split, fancy-regex in tiktoken): alternatives tried left to
// right, greedy loops giving back one rune at a time from their end,
// look-ahead.
//
// Not through tiktoken-go's split: its codec registers regexp2cg-generated
// matchers for these exact pattern strings, and the generated code
// backtracks the greedy \s* of \s*[\r\n]+ to the first line break of the
// run instead of the last (regexp2cg emits IndexOfAny where its "Last"
// variant is asked for, for small character sets: convert.go
// emitIndexOfChars ignores useLast). So on "\n \n" it matches "\n" where
// the pattern matches "\n \n"; see TestNewlineWhitespaceRuns. Each pattern
// is compiled here wrapped in a group, a different string, so regexp2
// runs its interpreter, not the registered generated code.
var regexp2Patterns = func() map[pattern]*regexp2.Regexp {
	out := map[pattern]*regexp2.Regexp{}
	for src, p := range knownPatterns {
		out[p] = regexp2.MustCompile("(?:"+src+")", regexp2.None)
	}
	return out
}()

// regexp2Split returns the pieces the regex matches in s, and whether they
// tile it (every byte in a match).
func regexp2Split(t *testing.T, re *regexp2.Regexp, s string) ([]string, bool) {
	t.Helper()
	var pieces []string
	end := 0
	m, err := re.FindStringMatch(s)
	for ; m != nil && err == nil; m, err = re.FindNextMatch(m) {
		start, _ := m.ByteRange()
		if start != end {
			return pieces, false
		}
		pieces = append(pieces, m.String())
		end = start + len(m.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	return pieces, end == len(s)
}

func scannerSplit(p pattern, s string) []string {
	var pieces []string
	for i := 0; i < len(s); {
		j := p.next([]byte(s), i)
		pieces = append(pieces, s[i:j])
		i = j
	}
	return pieces
}

func checkSplit(t *testing.T, s string) {
	t.Helper()
	for p, re := range regexp2Patterns {
		want, tiled := regexp2Split(t, re, s)
		if !tiled {
			t.Fatalf("pattern %d: the regex leaves part of %q unmatched: %q", p, s, want)
		}
		if got := scannerSplit(p, s); !slices.Equal(got, want) {
			t.Fatalf("pattern %d splits %q:\n got  %q\n want %q", p, s, got, want)
		}
	}
}

// splitInputs is what the split fuzz starts from: every alternative of
// the patterns, whitespace runs with and without line breaks in every
// position, contractions, scripts.
var splitInputs = []string{
	"", "a", " ", "\n", "\n \n", "a\n \nb", " \n \n", "\n\t\n", "\n  \n  x", "x\r\n \r\n", "\n \n\n \n ",
	"\u00a0\n\u3000\n", "!\n \n", "foo  bar   baz    \n  qux\t\t\n", "I'm THEY'RE we'll've", "'s's",
	"1234567 12 345", "x=1+2;\r\n\ty = 3", "你好，世界！", "Привет, мир!", "emoji 👍🏽 flags 🇫🇷", "\x7f0", "\x7fa",
	"trailing   ", "   leading", strings.Repeat(" \n", 20), strings.Repeat("\n ", 20) + "x",
}

func TestSplitMatchesRegex(t *testing.T) {
	for _, s := range splitInputs {
		checkSplit(t, s)
	}
}

// FuzzSplitMatchesRegex: the scanners split any text as the patterns do.
func FuzzSplitMatchesRegex(f *testing.F) {
	for _, s := range splitInputs {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Prompts reach the tokenizer JSON-decoded: valid UTF-8.
		s = strings.ToValidUTF8(s, "\uFFFD")
		// (?i) folds ſ to s in the Rust and Oniguruma engines model servers
		// run, not in regexp2.
		if strings.ContainsRune(s, 'ſ') || !utf8.ValidString(s) {
			return
		}
		checkSplit(t, s)
	})
}
