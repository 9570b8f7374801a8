package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"unicode/utf8"
)

// Limits on a tokenizer.json (an operator's file, read by every proxy).
const (
	// MaxFileBytes bounds the file: the largest byte-level BPE
	// tokenizer.json files in use are ~30 MB (Llama 3's is 9 MB).
	MaxFileBytes = 128 << 20
	// MaxVocab bounds the vocabulary and every token id.
	MaxVocab = 1 << 21
	// MaxTokenBytes bounds one vocabulary entry or added token.
	MaxTokenBytes = 4096
	// MaxAddedTokens bounds the added tokens.
	MaxAddedTokens = 1 << 16
)

// Tokenizer is a loaded tokenizer.json; safe for concurrent use.
type Tokenizer struct {
	vocab        map[string]uint32 // token bytes → id
	byteID       [256]uint32       // the id of each single byte
	merges       map[uint64]merge  // (left id, right id) → rank and result
	ignoreMerges bool
	nfc          bool
	split        pattern
	prefixSpace  bool
	added        addedTokens
	// prefix and suffix are the post-processor's tokens around a single
	// sequence (Encode with special tokens).
	prefix, suffix []uint32
	size           int // largest id + 1
	bufs           sync.Pool
}

type merge struct{ rank, id uint32 }

func pairKey(a, b uint32) uint64 { return uint64(a)<<32 | uint64(b) }

// LoadFile loads a tokenizer.json.
func LoadFile(path string) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := Load(f)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

// Load reads a tokenizer.json from r.
func Load(r io.Reader) (*Tokenizer, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("larger than %d MiB", MaxFileBytes>>20)
	}
	return Parse(data)
}

type fileJSON struct {
	AddedTokens   []addedJSON     `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Model         *modelJSON      `json:"model"`
}

type modelJSON struct {
	Type                    string           `json:"type"`
	Vocab                   map[string]int64 `json:"vocab"`
	Merges                  json.RawMessage  `json:"merges"`
	IgnoreMerges            bool             `json:"ignore_merges"`
	ByteFallback            bool             `json:"byte_fallback"`
	Dropout                 *float64         `json:"dropout"`
	ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
}

type addedJSON struct {
	ID         int64  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Special    bool   `json:"special"`
}

// Parse builds a tokenizer from the contents of a tokenizer.json.
func Parse(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a tokenizer.json: %w", err)
	}
	m := f.Model
	switch {
	case m == nil:
		return nil, errors.New("no model")
	case m.Type != "BPE":
		return nil, fmt.Errorf("model type %q: only byte-level BPE is supported", m.Type)
	case m.ByteFallback:
		return nil, errors.New("model.byte_fallback: a SentencePiece-style BPE, not byte-level")
	case m.Dropout != nil && *m.Dropout != 0:
		return nil, errors.New("model.dropout: BPE dropout makes tokenization random")
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "",
		m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return nil, errors.New("model.continuing_subword_prefix/end_of_word_suffix: not a byte-level BPE")
	case len(m.Vocab) == 0:
		return nil, errors.New("model.vocab is empty")
	case len(m.Vocab) > MaxVocab:
		return nil, fmt.Errorf("model.vocab: more than %d entries", MaxVocab)
	}
	t := &Tokenizer{ignoreMerges: m.IgnoreMerges}
	t.bufs.New = func() any { return &scratch{} }
	if err := t.loadVocab(m.Vocab); err != nil {
		return nil, err
	}
	if err := t.loadMerges(m.Merges); err != nil {
		return nil, err
	}
	if err := t.loadAdded(f.AddedTokens); err != nil {
		return nil, err
	}
	var err error
	if t.nfc, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if t.split, t.prefixSpace, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	if t.prefix, t.suffix, err = t.parsePostProcessor(f.PostProcessor); err != nil {
		return nil, err
	}
	return t, nil
}

// loadVocab maps the byte-level vocabulary back to bytes. Entries outside
// the byte-level alphabet (a raw space, say) cannot come out of BPE over
// bytes: they are left out (added tokens reach them by id).
func (t *Tokenizer) loadVocab(vocab map[string]int64) error {
	t.vocab = make(map[string]uint32, len(vocab))
	var haveByte [256]bool
	var buf []byte
	for tok, id := range vocab {
		if id < 0 || id >= MaxVocab {
			return fmt.Errorf("model.vocab[%q]: id %d out of range [0, %d)", tok, id, MaxVocab)
		}
		if len(tok) == 0 || len(tok) > MaxTokenBytes {
			return fmt.Errorf("model.vocab: an entry of %d bytes (1 to %d)", len(tok), MaxTokenBytes)
		}
		t.size = max(t.size, int(id)+1)
		var ok bool
		if buf, ok = decodeByteLevel(buf[:0], tok); !ok {
			continue
		}
		if prev, dup := t.vocab[string(buf)]; dup && prev != uint32(id) {
			return fmt.Errorf("model.vocab: %q has ids %d and %d", tok, prev, id)
		}
		t.vocab[string(buf)] = uint32(id)
		if len(buf) == 1 {
			haveByte[buf[0]] = true
			t.byteID[buf[0]] = uint32(id)
		}
	}
	for b, ok := range haveByte {
		if !ok {
			return fmt.Errorf("model.vocab: byte 0x%02x (%q) missing: not a byte-level vocabulary", b, string(byteRune[b]))
		}
	}
	return nil
}

// loadMerges reads merges as "left right" strings or [left, right] pairs;
// a merge's rank is its index (a pair listed twice keeps its later rank,
// as the Rust library's map does).
func (t *Tokenizer) loadMerges(raw json.RawMessage) error {
	var pairs [][2]string
	var strs []string
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return errors.New("model.merges missing")
	}
	if err := json.Unmarshal(raw, &strs); err == nil {
		pairs = make([][2]string, len(strs))
		for i, s := range strs {
			l, r, ok := splitMerge(s)
			if !ok {
				return fmt.Errorf("model.merges[%d] %q: want two tokens separated by one space", i, s)
			}
			pairs[i] = [2]string{l, r}
		}
	} else if err := json.Unmarshal(raw, &pairs); err != nil {
		return errors.New("model.merges: want an array of \"left right\" strings or of [left, right] pairs")
	}
	t.merges = make(map[uint64]merge, len(pairs))
	var lb, rb, mb []byte
	for i, p := range pairs {
		var okL, okR bool
		lb, okL = decodeByteLevel(lb[:0], p[0])
		rb, okR = decodeByteLevel(rb[:0], p[1])
		l, inL := t.vocab[string(lb)]
		r, inR := t.vocab[string(rb)]
		if !okL || !okR || !inL || !inR {
			return fmt.Errorf("model.merges[%d] (%q, %q): a token not in the byte-level vocabulary", i, p[0], p[1])
		}
		mb = append(append(mb[:0], lb...), rb...)
		id, ok := t.vocab[string(mb)]
		if !ok {
			return fmt.Errorf("model.merges[%d] (%q, %q): their concatenation is not in the vocabulary", i, p[0], p[1])
		}
		t.merges[pairKey(l, r)] = merge{rank: uint32(i), id: id}
	}
	return nil
}

// splitMerge splits "left right" at its one separating space (byte-level
// tokens hold no raw space).
func splitMerge(s string) (string, string, bool) {
	i := bytes.IndexByte([]byte(s), ' ')
	if i <= 0 || i == len(s)-1 || bytes.IndexByte([]byte(s[i+1:]), ' ') >= 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

func (t *Tokenizer) loadAdded(added []addedJSON) error {
	if len(added) > MaxAddedTokens {
		return fmt.Errorf("added_tokens: more than %d", MaxAddedTokens)
	}
	for i, a := range added {
		switch {
		case a.ID < 0 || a.ID >= MaxVocab:
			return fmt.Errorf("added_tokens[%d] %q: id %d out of range [0, %d)", i, a.Content, a.ID, MaxVocab)
		case a.Content == "" || len(a.Content) > MaxTokenBytes:
			return fmt.Errorf("added_tokens[%d]: content of %d bytes (1 to %d)", i, len(a.Content), MaxTokenBytes)
		case !utf8.ValidString(a.Content):
			return fmt.Errorf("added_tokens[%d]: content is not UTF-8", i)
		}
		t.size = max(t.size, int(a.ID)+1)
		t.added.add(addedToken{content: a.Content, id: uint32(a.ID), lstrip: a.LStrip, rstrip: a.RStrip, singleWord: a.SingleWord})
	}
	t.added.build()
	return nil
}

type typed struct {
	Type string `json:"type"`
}

func parseNormalizer(raw json.RawMessage) (nfc bool, err error) {
	if isNull(raw) {
		return false, nil
	}
	var n struct {
		typed
		Normalizers []json.RawMessage `json:"normalizers"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return false, fmt.Errorf("normalizer: %w", err)
	}
	switch n.Type {
	case "NFC":
		return true, nil
	case "Sequence":
		for _, sub := range n.Normalizers {
			sn, err := parseNormalizer(sub)
			if err != nil {
				return false, err
			}
			nfc = nfc || sn
		}
		return nfc, nil
	}
	return false, fmt.Errorf("normalizer %q not supported (none, NFC)", n.Type)
}

type byteLevelJSON struct {
	typed
	AddPrefixSpace bool  `json:"add_prefix_space"`
	UseRegex       *bool `json:"use_regex"`
}

type splitJSON struct {
	typed
	Pattern struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Behavior string `json:"behavior"`
	Invert   bool   `json:"invert"`
}

// parsePreTokenizer accepts ByteLevel (its own GPT-2 split unless
// use_regex is false) or a Sequence of one Split and a ByteLevel that does
// not split again.
func parsePreTokenizer(raw json.RawMessage) (pattern, bool, error) {
	if isNull(raw) {
		return 0, false, errors.New("pre_tokenizer missing: a byte-level BPE needs ByteLevel")
	}
	var seq struct {
		typed
		PreTokenizers []json.RawMessage `json:"pretokenizers"`
	}
	if err := json.Unmarshal(raw, &seq); err != nil {
		return 0, false, fmt.Errorf("pre_tokenizer: %w", err)
	}
	steps := []json.RawMessage{raw}
	if seq.Type == "Sequence" {
		steps = seq.PreTokenizers
	}
	split, splits, prefixSpace, byteLevel := patternNone, 0, false, false
	for i, s := range steps {
		var ty typed
		if err := json.Unmarshal(s, &ty); err != nil {
			return 0, false, fmt.Errorf("pre_tokenizer step %d: %w", i, err)
		}
		switch ty.Type {
		case "ByteLevel":
			var bl byteLevelJSON
			if err := json.Unmarshal(s, &bl); err != nil {
				return 0, false, fmt.Errorf("pre_tokenizer ByteLevel: %w", err)
			}
			if byteLevel || i != len(steps)-1 {
				return 0, false, errors.New("pre_tokenizer: ByteLevel must come once, last")
			}
			byteLevel, prefixSpace = true, bl.AddPrefixSpace
			if bl.UseRegex == nil || *bl.UseRegex {
				split, splits = patternGPT2, splits+1
			}
		case "Split":
			var sp splitJSON
			if err := json.Unmarshal(s, &sp); err != nil {
				return 0, false, fmt.Errorf("pre_tokenizer Split: %w", err)
			}
			if sp.Behavior != "Isolated" || sp.Invert || sp.Pattern.Regex == nil {
				return 0, false, fmt.Errorf("pre_tokenizer Split: only a Regex pattern with behavior Isolated, not inverted, is supported (got %q, invert %v)", sp.Behavior, sp.Invert)
			}
			p, ok := knownPatterns[*sp.Pattern.Regex]
			if !ok {
				return 0, false, fmt.Errorf("pre_tokenizer Split: pattern %q not supported (GPT-2's, cl100k/Llama 3's and Qwen 2's are)", *sp.Pattern.Regex)
			}
			split, splits = p, splits+1
		default:
			return 0, false, fmt.Errorf("pre_tokenizer %q not supported (ByteLevel, Split, Sequence)", ty.Type)
		}
	}
	switch {
	case !byteLevel:
		return 0, false, errors.New("pre_tokenizer: no ByteLevel step: not a byte-level BPE")
	case splits > 1:
		return 0, false, errors.New("pre_tokenizer: more than one split pattern")
	}
	return split, prefixSpace, nil
}

type templateJSON struct {
	typed
	Single []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
		Sequence *struct {
			ID string `json:"id"`
		} `json:"Sequence"`
	} `json:"single"`
	SpecialTokens map[string]struct {
		IDs []int64 `json:"ids"`
	} `json:"special_tokens"`
	// RobertaProcessing, BertProcessing: [token, id].
	Cls        []json.RawMessage `json:"cls"`
	Sep        []json.RawMessage `json:"sep"`
	Processors []json.RawMessage `json:"processors"`
}

// parsePostProcessor returns the ids a single sequence gets before and
// after it when special tokens are added.
func (t *Tokenizer) parsePostProcessor(raw json.RawMessage) (prefix, suffix []uint32, err error) {
	if isNull(raw) {
		return nil, nil, nil
	}
	var p templateJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, nil, fmt.Errorf("post_processor: %w", err)
	}
	switch p.Type {
	case "ByteLevel":
		return nil, nil, nil
	case "Sequence":
		for _, sub := range p.Processors {
			pre, suf, err := t.parsePostProcessor(sub)
			if err != nil {
				return nil, nil, err
			}
			// Each processor wraps what the ones before produced.
			prefix = append(pre, prefix...)
			suffix = append(suffix, suf...)
		}
		return prefix, suffix, nil
	case "RobertaProcessing", "BertProcessing":
		cls, err := t.idOfPair(p.Cls)
		if err != nil {
			return nil, nil, fmt.Errorf("post_processor %s cls: %w", p.Type, err)
		}
		sep, err := t.idOfPair(p.Sep)
		if err != nil {
			return nil, nil, fmt.Errorf("post_processor %s sep: %w", p.Type, err)
		}
		return []uint32{cls}, []uint32{sep}, nil
	case "TemplateProcessing":
		seen := false
		for _, piece := range p.Single {
			switch {
			case piece.Sequence != nil:
				if seen {
					return nil, nil, errors.New("post_processor TemplateProcessing: single names the sequence twice")
				}
				seen = true
			case piece.SpecialToken != nil:
				st, ok := p.SpecialTokens[piece.SpecialToken.ID]
				if !ok {
					return nil, nil, fmt.Errorf("post_processor TemplateProcessing: special token %q not in special_tokens", piece.SpecialToken.ID)
				}
				for _, id := range st.IDs {
					if id < 0 || id >= int64(t.size) {
						return nil, nil, fmt.Errorf("post_processor TemplateProcessing: %q id %d out of the vocabulary", piece.SpecialToken.ID, id)
					}
					if seen {
						suffix = append(suffix, uint32(id))
					} else {
						prefix = append(prefix, uint32(id))
					}
				}
			default:
				return nil, nil, errors.New("post_processor TemplateProcessing: a piece of single that is neither SpecialToken nor Sequence")
			}
		}
		if !seen {
			return nil, nil, errors.New("post_processor TemplateProcessing: single has no sequence")
		}
		return prefix, suffix, nil
	}
	return nil, nil, fmt.Errorf("post_processor %q not supported (TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)", p.Type)
}

// idOfPair reads a [token, id] pair.
func (t *Tokenizer) idOfPair(pair []json.RawMessage) (uint32, error) {
	var id int64
	if len(pair) != 2 || json.Unmarshal(pair[1], &id) != nil {
		return 0, errors.New("want [token, id]")
	}
	if id < 0 || id >= int64(t.size) {
		return 0, fmt.Errorf("id %d out of the vocabulary", id)
	}
	return uint32(id), nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// VocabSize is the largest token id plus one.
func (t *Tokenizer) VocabSize() int { return t.size }

// Special returns the ids the post-processor puts before and after a
// single sequence (Encode with special tokens).
func (t *Tokenizer) Special() (prefix, suffix []uint32) {
	return slices.Clone(t.prefix), slices.Clone(t.suffix)
}
