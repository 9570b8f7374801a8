// Package cl100k is the simulator's real tokenizer: OpenAI's cl100k_base
// BPE (shipped inside github.com/tiktoken-go/tokenizer, so nothing is
// downloaded) plus Llama 3's special tokens at Llama 3's ids, so modelsim
// renders Llama 3's chat template into real token ids. TokenizerJSON writes
// the same vocabulary as a Hugging Face tokenizer.json (converted the way
// transformers converts tiktoken vocabularies, which is how Llama 3's own
// tokenizer.json was made), for a gateway to load as an operator would
// load a model's: the simulator and the gateway then tokenize with two
// independent implementations that must agree.
package cl100k

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	tiktoken "github.com/tiktoken-go/tokenizer"
	"github.com/tiktoken-go/tokenizer/codec"

	"github.com/infergate/infergate/proto/tokenizer"
)

// Name is the tokenizer's name in modelsim's flags and a pool's builtin.
const Name = "cl100k"

// Llama 3's special tokens (those its chat template and post-processor use).
var specials = []struct {
	Content string
	ID      uint32
}{
	{"<|begin_of_text|>", 128000},
	{"<|end_of_text|>", 128001},
	{"<|start_header_id|>", 128006},
	{"<|end_header_id|>", 128007},
	{"<|eom_id|>", 128008},
	{"<|eot_id|>", 128009},
	{"<|python_tag|>", 128010},
}

// BOS is what Llama 3 puts before a completion prompt.
const BOS = 128000

// ordinary is the number of cl100k_base's ordinary tokens (ids 0 to
// 100255).
const ordinary = 100256

var loadCodec = sync.OnceValues(func() (tiktoken.Codec, error) { return tiktoken.Get(tiktoken.Cl100kBase) })

// Encoder tokenizes text as modelsim does with --tokenizer cl100k.
type Encoder struct{ c tiktoken.Codec }

// NewEncoder loads the vocabulary (once per process, ~100 ms).
func NewEncoder() (*Encoder, error) {
	c, err := loadCodec()
	if err != nil {
		return nil, fmt.Errorf("cl100k: %w", err)
	}
	return &Encoder{c: c}, nil
}

// Encode appends text's token ids to dst: Llama 3's special tokens where
// the text holds them, cl100k_base's BPE for the rest; special puts BOS
// first (a completion prompt, as vLLM tokenizes one for Llama 3).
func (e *Encoder) Encode(dst []uint32, text []byte, special bool) []uint32 {
	if special {
		dst = append(dst, BOS)
	}
	for len(text) > 0 {
		at, n, id := len(text), 0, uint32(0)
		for _, s := range specials {
			if i := bytes.Index(text[:min(len(text), at+len(s.Content))], []byte(s.Content)); i >= 0 && i < at {
				at, n, id = i, len(s.Content), s.ID
			}
		}
		if at > 0 {
			ids, _, _ := e.c.Encode(string(text[:at]))
			for _, t := range ids {
				dst = append(dst, uint32(t))
			}
		}
		if n == 0 {
			break
		}
		dst = append(dst, id)
		text = text[at+n:]
	}
	return dst
}

// TokenizerJSON returns the vocabulary as a Hugging Face tokenizer.json:
// byte-level BPE with cl100k's split pattern, ignore_merges (tiktoken takes
// a piece found whole in the vocabulary as one token), Llama 3's special
// tokens as added tokens and its post-processor (BOS before a sequence).
func TokenizerJSON() ([]byte, error) {
	c, err := loadCodec()
	if err != nil {
		return nil, fmt.Errorf("cl100k: %w", err)
	}
	cd, ok := c.(*codec.Codec)
	if !ok {
		return nil, fmt.Errorf("cl100k: unexpected codec type %T", c)
	}
	tokens := make([][]byte, ordinary)
	rank := make(map[string]int, ordinary)
	for id := range ordinary {
		s, err := cd.Decode([]uint{uint(id)})
		if err != nil {
			return nil, fmt.Errorf("cl100k: token %d: %w", id, err)
		}
		tokens[id] = []byte(s)
		rank[s] = id
	}
	vocab := make(map[string]int, ordinary)
	var merges [][2]string
	for id, tok := range tokens {
		vocab[string(tokenizer.EncodeByteLevel(nil, tok))] = id
		// Every split of the token into two tokens merges into it, lower
		// ranked parts first (transformers' TikTokenConverter).
		var local [][2][]byte
		for k := 1; k < len(tok); k++ {
			_, okL := rank[string(tok[:k])]
			_, okR := rank[string(tok[k:])]
			if okL && okR {
				local = append(local, [2][]byte{tok[:k], tok[k:]})
			}
		}
		slices.SortStableFunc(local, func(a, b [2][]byte) int {
			if d := rank[string(a[0])] - rank[string(b[0])]; d != 0 {
				return d
			}
			return rank[string(a[1])] - rank[string(b[1])]
		})
		for _, p := range local {
			merges = append(merges, [2]string{string(tokenizer.EncodeByteLevel(nil, p[0])), string(tokenizer.EncodeByteLevel(nil, p[1]))})
		}
	}
	type added struct {
		ID         uint32 `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	var addedTokens []added
	for _, s := range specials {
		addedTokens = append(addedTokens, added{ID: s.ID, Content: s.Content, Special: true})
	}
	const pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	file := map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": addedTokens,
		"normalizer":   nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]string{"Regex": pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "Sequence", "processors": []any{
			map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
			map[string]any{"type": "TemplateProcessing",
				"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
				"pair":           []any{},
				"special_tokens": map[string]any{"<|begin_of_text|>": map[string]any{"id": "<|begin_of_text|>", "ids": []uint32{BOS}, "tokens": []string{"<|begin_of_text|>"}}},
			},
		}},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": true,
			"vocab": vocab, "merges": merges},
	}
	return json.Marshal(file)
}
