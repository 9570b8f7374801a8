package kvindex

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/infergate/infergate/proto/kvevents"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/tokenizer"
)

// Tokenizer turns a request's prompt into the token ids the model server
// computes for it: the chat template applied to messages, or the
// completion prompt (token-id prompts are taken as they are).
type Tokenizer struct {
	// bpe is the model's tokenizer.json; nil: the builtin ByteTokens.
	bpe *tokenizer.Tokenizer
}

// NewTokenizer builds the tokenizer a pool's KVEvents names, loading its
// tokenizer.json (Client caches loaded files; this loads every time).
func NewTokenizer(tk *snapshotv1.Tokenizer) (*Tokenizer, error) {
	if err := kvevents.CheckConfig(&snapshotv1.KVEvents{Tokenizer: tk}); err != nil {
		return nil, err
	}
	if tk.GetPath() == "" {
		return &Tokenizer{}, nil
	}
	bpe, err := tokenizer.LoadFile(tk.GetPath())
	if err != nil {
		return nil, err
	}
	return &Tokenizer{bpe: bpe}, nil
}

// MaxTokenizeBytes bounds the prompt text a tokenizer.json tokenizes per
// request (1 MiB, more than any 128k-token context holds): BPE costs up to
// ~0.4 µs per byte on text built to defeat it (long words the vocabulary
// does not hold), so a longer prompt's tail is not matched rather than
// let one request cost the proxy more than ~0.5 s of CPU.
const MaxTokenizeBytes = 1 << 20

// encode tokenizes text; special adds what the model's post-processor puts
// around a sequence, as servers do for completion prompts (not for a
// rendered chat template, which carries its own).
func (t *Tokenizer) encode(dst []uint32, text []byte, special bool) []uint32 {
	if t.bpe == nil {
		return kvevents.ByteTokens(dst, text)
	}
	return t.bpe.Encode(dst, text[:min(len(text), MaxTokenizeBytes)], special)
}

// errNoPrompt: the body has no prompt this tokenizer can read.
var errNoPrompt = errors.New("no messages or prompt to tokenize")

type promptBody struct {
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Prompt json.RawMessage `json:"prompt"`
}

// Tokens appends the token ids of body's prompt to dst; scratch is reused
// for the rendered text and returned grown.
func (t *Tokenizer) Tokens(dst []uint32, scratch []byte, body []byte) ([]uint32, []byte, error) {
	var b promptBody
	if err := json.Unmarshal(body, &b); err != nil {
		return dst, scratch, err
	}
	switch {
	case len(b.Messages) > 0:
		text := kvevents.AppendLlama3Begin(scratch[:0])
		for _, m := range b.Messages {
			c, err := messageText(m.Content)
			if err != nil {
				return dst, text, err
			}
			text = kvevents.AppendLlama3Message(text, m.Role, c)
		}
		text = kvevents.AppendLlama3End(text)
		return t.encode(dst, text, false), text, nil
	case len(b.Prompt) > 0:
		return t.completionTokens(dst, scratch, b.Prompt)
	}
	return dst, scratch, errNoPrompt
}

// messageText is a message's text: a string, null, or the text parts of
// an array of content parts, concatenated (as vLLM and modelsim read it).
func messageText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("content must be a string or an array of content parts")
	}
	var s []byte
	for _, p := range parts {
		if p.Type == "text" {
			s = append(s, p.Text...)
		}
	}
	return string(s), nil
}

// completionTokens reads a completion prompt: a string or a one-element
// string array (tokenized), or token ids (one prompt).
func (t *Tokenizer) completionTokens(dst []uint32, scratch []byte, raw json.RawMessage) ([]uint32, []byte, error) {
	raw = bytes.TrimSpace(raw)
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return dst, scratch, err
		}
		return t.encode(dst, []byte(s), true), scratch, nil
	case '[':
		var ss []string
		if err := json.Unmarshal(raw, &ss); err == nil {
			if len(ss) != 1 {
				return dst, scratch, errors.New("several prompts in one request")
			}
			return t.encode(dst, []byte(ss[0]), true), scratch, nil
		}
		var ids []uint32
		if err := json.Unmarshal(raw, &ids); err != nil {
			return dst, scratch, errors.New("prompt must be a string, one string or token ids")
		}
		return append(dst, ids...), scratch, nil
	}
	return dst, scratch, errors.New("prompt must be a string, one string or token ids")
}
