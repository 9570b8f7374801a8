package tokenizer_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode"
	"unicode/utf8"

	tiktoken "github.com/tiktoken-go/tokenizer"

	"github.com/infergate/infergate/proto/kvevents"
	"github.com/infergate/infergate/proto/tokenizer"
	"github.com/infergate/infergate/proto/tokenizer/cl100k"
)

// loaded is the cl100k vocabulary loaded from its tokenizer.json, and the
// reference encoder (tiktoken-go), once per test binary.
var loaded = sync.OnceValues(func() (*tokenizer.Tokenizer, error) {
	js, err := cl100k.TokenizerJSON()
	if err != nil {
		return nil, err
	}
	return tokenizer.Parse(js)
})

func cl100kPair(t testing.TB) (*tokenizer.Tokenizer, *cl100k.Encoder) {
	t.Helper()
	tok, err := loaded()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := cl100k.NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	return tok, ref
}

// Token ids published for cl100k_base (OpenAI's cookbook and tiktoken's
// README), independent of both implementations here.
func TestCL100KKnownIDs(t *testing.T) {
	tok, _ := cl100kPair(t)
	for _, c := range []struct {
		text    string
		special bool
		want    []uint32
	}{
		{"hello world", false, []uint32{15339, 1917}},
		{"tiktoken is great!", false, []uint32{83, 1609, 5963, 374, 2294, 0}},
		{"hello world", true, []uint32{128000, 15339, 1917}},
		{"<|begin_of_text|><|start_header_id|>user<|end_header_id|>", false, []uint32{128000, 128006, 882, 128007}},
	} {
		if got := tok.Encode(nil, []byte(c.text), c.special); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q, %v) = %v, want %v", c.text, c.special, got, c.want)
		}
	}
	if n := tok.VocabSize(); n != 128011 {
		t.Errorf("VocabSize = %d, want 128011", n)
	}
}

// corpus exercises every alternative of the split pattern: contractions in
// any case, letters after one other rune, digit runs, punctuation with
// line breaks, whitespace runs before words, at the end and with line
// breaks, non-Latin scripts, long pieces (the heap merge), emoji.
func corpus() []string {
	c := []string{
		"", " ", "  ", "\n", " \n", "\n\n\n", "a", "A  b", "I'm", "I'M", "THEY'RE", "we'll've", "it'S", "'s'", "'",
		"don't stop", "1234567", "12 345 6789", "x=1+2;\r\n\ty = 3", "foo  bar   baz    \n  qux\t\t\n",
		"trailing spaces   ", "   leading", "mixed\u00a0nbsp\u3000ideographic space",
		"(hello) [world] {json: \"yes\"}", "!!!???...\n\n", "  ...\n", "a\r\nb\rc\nd",
		"你好，世界！这是一个测试。", "こんにちは世界", "Привет, мир! Как дела?", "مرحبا بالعالم", "שלום עולם",
		"emoji 👍🏽 and 🇫🇷 flags", "tab\tseparated\tvalues\t1\t2", "func main() {\n\tfmt.Println(\"hi\")\n}\n",
		"<|eot_id|>inside<|start_header_id|>text", "<|not_special|>", "Ⅻ roman ½ fractions ²³",
		strings.Repeat("a", 3000), strings.Repeat("ab", 700), strings.Repeat("中文", 400), strings.Repeat("=", 500),
		strings.Repeat(" ", 300) + "x", strings.Repeat("\n", 200),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcXYZ '’s\n\r\t 0123456789.,;!?-_()<|>\"éßΩЖ中日한🙂\u00a0\u2003")
	for range 300 {
		var b strings.Builder
		for range rng.IntN(200) {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		c = append(c, b.String())
	}
	return c
}

// The loader must tokenize exactly as tiktoken does on the same
// vocabulary (a different implementation: regexp2 for the split, its own
// merge loop).
func TestCL100KMatchesTiktoken(t *testing.T) {
	tok, ref := cl100kPair(t)
	for _, text := range corpus() {
		for _, special := range []bool{false, true} {
			want := ref.Encode(nil, []byte(text), special)
			if got := tok.Encode(nil, []byte(text), special); !slices.Equal(got, want) {
				t.Errorf("Encode(%q, %v):\n got  %v\n want %v", text, special, got, want)
			}
		}
	}
}

// The chat template modelsim and the proxy render, tokenized.
func TestCL100KChatTemplate(t *testing.T) {
	tok, ref := cl100kPair(t)
	text := kvevents.AppendLlama3Begin(nil)
	text = kvevents.AppendLlama3Message(text, "system", "You are a helpful assistant.")
	text = kvevents.AppendLlama3Message(text, "user", "What's 2+2?")
	text = kvevents.AppendLlama3End(text)
	got := tok.Encode(nil, text, false)
	if want := ref.Encode(nil, text, false); !slices.Equal(got, want) {
		t.Fatalf("chat: got %v, want %v", got, want)
	}
	if n := len(got); n < 4 || got[0] != 128000 || got[1] != 128006 || got[n-2] != 128007 || got[n-1] != 271 {
		t.Errorf("chat tokens %v: want <|begin_of_text|><|start_header_id|> first and the assistant header last", got)
	}
}

func FuzzCL100KMatchesTiktoken(f *testing.F) {
	for _, s := range corpus()[:60] {
		f.Add(s)
	}
	tok, ref := cl100kPair(f)
	f.Fuzz(func(t *testing.T, s string) {
		// Prompts reach the tokenizer JSON-decoded: valid UTF-8.
		s = strings.ToValidUTF8(s, "\uFFFD")
		// (?i) folds ſ to s in the Rust and Oniguruma engines model servers
		// run, not in regexp2: the reference differs there on purpose.
		if strings.ContainsRune(s, 'ſ') || !utf8.ValidString(s) {
			return
		}
		// tiktoken-go's generated split loses U+007F at a match's start
		// ("\x7f0" gives only "0"); tiktoken itself does not.
		if strings.ContainsRune(s, 0x7f) {
			return
		}
		// A whitespace run with a line break, more whitespace and another
		// line break ("\n \n"): tiktoken-go's split is wrong there (see
		// TestNewlineWhitespaceRuns), so inputs holding such a run are
		// left out here; FuzzSplitMatchesRegex checks this tokenizer's
		// split of them against the pattern itself.
		if newlineRun(s) {
			return
		}
		want := ref.Encode(nil, []byte(s), false)
		if got := tok.Encode(nil, []byte(s), false); !slices.Equal(got, want) {
			t.Fatalf("Encode(%q):\n got  %v\n want %v", s, got, want)
		}
	})
}

// TestNewlineWhitespaceRuns: cl100k's pattern reads a whitespace run with
// a line break, more whitespace and another line break as one piece up to
// its last line break, and tiktoken-go does not.
//
// The alternative \s*[\r\n]+ matches at the run's start: the greedy \s*
// takes the whole run, then gives back one rune at a time from the end
// until [\r\n]+ matches, i.e. up to the run's last line break ("\n \n"
// whole; "\n \n  x" gives "\n \n", then "  x" by the later
// alternatives). That is how the engines that run the pattern for model
// servers match it: Hugging Face tokenizers' Split runs it with
// Oniguruma (tokenizers/src/utils/onig.rs, SysRegex find_iter), OpenAI
// tiktoken with fancy-regex (CoreBPE's regex.find_iter), both backtracking
// with leftmost-first alternation; so does regexp2's own interpreter and,
// for this alternative, Go's regexp (FuzzSplitMatchesRegex checks the
// scanners against regexp2's interpreter on any text). The vocabulary says
// the same: cl100k_base holds "\n \n" (27907), "\n  \n" (14211),
// "\n\t\n" (18108) and " \n \n" (33006), tokens BPE training can only
// learn from pieces that contain them — pieces tiktoken-go's split never
// makes, so it can never emit those ids.
//
// tiktoken-go (v0.10.0) splits with matchers generated by regexp2cg for
// these pattern strings; the generated backtracking of \s* jumps to the
// first [\r\n] of the run instead of the last (regexp2cg
// convert_execute.go asks tryEmitExecuteIndexOf for the "Last" search,
// which emitIndexOfChars drops for small sets such as [\n\r]), so it
// yields "\n" + " \n" ([198 720]). The fuzz against it leaves these runs
// out (newlineRun) rather than encode its bug.
func TestNewlineWhitespaceRuns(t *testing.T) {
	tok, ref := cl100kPair(t)
	for _, c := range []struct {
		text     string
		want     []uint32
		tiktoken []uint32 // what tiktoken-go gives
	}{
		{"\n \n", []uint32{27907}, []uint32{198, 720}},
		{"\n  \n", []uint32{14211}, []uint32{198, 2355}},
		{"\n\t\n", []uint32{18108}, []uint32{198, 1602}},
		{" \n \n", []uint32{33006}, []uint32{720, 720}},
		{"a\n \nb", []uint32{64, 27907, 65}, []uint32{64, 198, 720, 65}},
		{"\n \n  x", []uint32{27907, 220, 865}, []uint32{198, 720, 220, 865}},
		// Runs without a second line break agree.
		{"\n\n \n", []uint32{271, 720}, []uint32{271, 720}},
		{"\n \n\n", []uint32{198, 4815}, []uint32{198, 4815}},
	} {
		if got := tok.Encode(nil, []byte(c.text), false); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
		// If tiktoken-go is fixed, this fails: then drop newlineRun.
		if got := ref.Encode(nil, []byte(c.text), false); !slices.Equal(got, c.tiktoken) {
			t.Errorf("tiktoken-go now encodes %q as %v (was %v): drop the fuzz's newlineRun exclusion if it agrees", c.text, got, c.tiktoken)
		}
	}
	// The vocabulary as tiktoken-go ships it: 27907 is "\n \n", and so on.
	codec, err := tiktoken.Get(tiktoken.Cl100kBase)
	if err != nil {
		t.Fatal(err)
	}
	for id, piece := range map[uint]string{27907: "\n \n", 14211: "\n  \n", 18108: "\n\t\n", 33006: " \n \n"} {
		if got, err := codec.Decode([]uint{id}); err != nil || got != piece {
			t.Errorf("token %d is %q (%v), want %q", id, got, err, piece)
		}
	}
}

// newlineRun reports whether s has a whitespace run in which a line break
// is followed, after other whitespace, by another line break.
func newlineRun(s string) bool {
	nl, gap := false, false
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r':
			if nl && gap {
				return true
			}
			nl, gap = true, false
		case unicode.IsSpace(r):
			gap = gap || nl
		default:
			nl, gap = false, false
		}
	}
	return false
}

func ExampleTokenizer_Encode() {
	js, _ := cl100k.TokenizerJSON()
	tok, _ := tokenizer.Parse(js)
	fmt.Println(tok.Encode(nil, []byte("hello world"), true))
	// Output: [128000 15339 1917]
}
