package tokenizer

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// tiny builds a byte-level tokenizer.json: the 256 bytes plus the given
// merges (and the tokens they make), with the JSON parts given.
func tiny(t testing.TB, merges [][2]string, extra map[string]any) []byte {
	t.Helper()
	vocab := map[string]int{}
	for b := range 256 {
		vocab[string(byteRune[b])] = b
	}
	ms := []string{}
	for _, m := range merges {
		ms = append(ms, m[0]+" "+m[1])
		if _, ok := vocab[m[0]+m[1]]; !ok {
			vocab[m[0]+m[1]] = len(vocab)
		}
	}
	f := map[string]any{
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false},
		"model":         map[string]any{"type": "BPE", "vocab": vocab, "merges": ms},
	}
	for k, v := range extra {
		f[k] = v
	}
	js, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func mustParse(t testing.TB, js []byte) *Tokenizer {
	t.Helper()
	tok, err := Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// GPT-2's split (ByteLevel's own regex), merges applied lowest rank
// first, not whole-word lookups (ignore_merges off).
func TestByteLevelGPT2Merges(t *testing.T) {
	// "Ġ" is the space byte. Ranks: "h e" 0, "l l" 1, "he ll" 2, "Ġ w" 3.
	tok := mustParse(t, tiny(t, [][2]string{{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"Ġ", "w"}}, nil))
	he, ll, hell, sw := uint32(256), uint32(257), uint32(258), uint32(259)
	got := tok.Encode(nil, []byte("hello world"), false)
	want := []uint32{hell, 'o', sw, 'o', 'r', 'l', 'd'}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// GPT-2 splits "'s" off and keeps a space with what follows.
	// GPT-2 splits "'s" off and keeps trailing spaces together.
	if got := tok.Encode(nil, []byte("he's  llama"), false); !slices.Equal(got, []uint32{he, '\'', 's', ' ', ' ', ll, 'a', 'm', 'a'}) {
		t.Errorf("he's: %v", got)
	}
}

// Merges in the newer [left, right] form, added tokens with lstrip and
// rstrip, a template post-processor and NFC.
func TestAddedTokensTemplateNFC(t *testing.T) {
	js := tiny(t, nil, map[string]any{
		"normalizer": map[string]any{"type": "NFC"},
		"added_tokens": []any{
			map[string]any{"id": 300, "content": "<s>", "special": true},
			map[string]any{"id": 301, "content": "[M]", "lstrip": true, "rstrip": true},
			map[string]any{"id": 302, "content": "<s>x"},
		},
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>"}}, map[string]any{"Sequence": map[string]any{"id": "A"}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"ids": []int{300}}}},
	})
	tok := mustParse(t, js)
	for _, c := range []struct {
		in      string
		special bool
		want    []uint32
	}{
		{"a", true, []uint32{300, 'a'}},
		{"a  [M]  b", false, []uint32{'a', 301, 'b'}},
		{"<s>x<s>", false, []uint32{302, 300}},   // longest first
		{"e\u0301", false, []uint32{0xc3, 0xa9}}, // NFC: é
	} {
		if got := tok.Encode(nil, []byte(c.in), c.special); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q, %v) = %v, want %v", c.in, c.special, got, c.want)
		}
	}
	if tok.VocabSize() != 303 {
		t.Errorf("VocabSize %d", tok.VocabSize())
	}
}

// Files a byte-level BPE loader must refuse, each with an error naming
// what is wrong (the proxy logs it and matching stays approximate).
func TestRefused(t *testing.T) {
	good := string(tiny(t, [][2]string{{"a", "b"}}, nil))
	for name, c := range map[string]struct{ js, want string }{
		"not json":     {`{"model":`, "not a tokenizer.json"},
		"no model":     {`{}`, "no model"},
		"wordpiece":    {`{"model":{"type":"WordPiece","vocab":{"a":0}}}`, "only byte-level BPE"},
		"byte fallbk":  {strings.Replace(good, `"type":"BPE"`, `"type":"BPE","byte_fallback":true`, 1), "byte_fallback"},
		"dropout":      {strings.Replace(good, `"type":"BPE"`, `"type":"BPE","dropout":0.1`, 1), "dropout"},
		"bad merge":    {strings.Replace(good, `"a b"`, `"a zz"`, 1), "not in the byte-level vocabulary"},
		"merge format": {strings.Replace(good, `"a b"`, `"ab"`, 1), "two tokens"},
		"no bytes":     {`{"pre_tokenizer":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}}`, "not a byte-level vocabulary"},
		"negative id":  {`{"model":{"type":"BPE","vocab":{"a":-1},"merges":[]}}`, "out of range"},
		"metaspace":    {strings.Replace(good, `"type":"ByteLevel"`, `"type":"Metaspace"`, 1), "not supported"},
		"pattern":      {strings.Replace(good, `"pre_tokenizer":{`, `"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\d+"},"behavior":"Isolated"},{"type":"ByteLevel","use_regex":false}]},"x":{`, 1), "not supported"},
		"normalizer":   {strings.Replace(good, `"model"`, `"normalizer":{"type":"Lowercase"},"model"`, 1), "normalizer"},
		"post":         {strings.Replace(good, `"model"`, `"post_processor":{"type":"Weird"},"model"`, 1), "post_processor"},
	} {
		_, err := Parse([]byte(c.js))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want it to mention %q", name, err, c.want)
		}
	}
}

// A long piece merges through the heap exactly as a short one through
// the scan.
func TestLongPieceSameAsShort(t *testing.T) {
	tok := mustParse(t, tiny(t, [][2]string{{"a", "b"}, {"ab", "ab"}, {"b", "a"}, {"abab", "a"}}, nil))
	for _, n := range []int{1, 3, 10, 40, 63, 64, 65, 200, 1001} {
		s := []byte(strings.Repeat("ab", n) + "a")
		sc := &scratch{}
		heap := tok.wordHeap(nil, s, sc)
		scan := tok.word(nil, s[:min(len(s), smallWord)], sc)
		if len(s) <= smallWord && !slices.Equal(heap, scan) {
			t.Errorf("n=%d: heap %v, scan %v", n, heap, scan)
		}
		if got := tok.Encode(nil, s, false); !slices.Equal(got, heap) {
			t.Errorf("n=%d: Encode %v, heap %v", n, got, heap)
		}
	}
}

// FuzzParse: any file loads or is refused with an error, never a panic;
// what loads tokenizes anything into ids of its vocabulary.
func FuzzParse(f *testing.F) {
	f.Add(tiny(f, [][2]string{{"a", "b"}, {"ab", "c"}}, nil))
	f.Add(tiny(f, nil, map[string]any{"added_tokens": []any{map[string]any{"id": 260, "content": "<x>", "lstrip": true, "single_word": true}}}))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{},"merges":[]}}`))
	f.Add([]byte(`{"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"x"}}]}}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		tok, err := Parse(js)
		if err != nil {
			return
		}
		for _, s := range []string{"", "hello world", "  a'S\n\n1234 <x> ä中 ", strings.Repeat("ab", 100)} {
			for _, id := range tok.Encode(nil, []byte(s), true) {
				if int(id) >= tok.VocabSize() {
					t.Fatalf("id %d beyond the vocabulary (%d)", id, tok.VocabSize())
				}
			}
		}
	})
}
