package openai

import (
	"bytes"
	"encoding/json"
)

// Usage is the token accounting of a response. Chat/completions name the
// counts prompt/completion tokens, the Responses API input/output tokens;
// both are folded into Input/Output.
type Usage struct {
	Input  int64
	Output int64
}

type usageJSON struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	InputTokens      int64 `json:"input_tokens"`
	OutputTokens     int64 `json:"output_tokens"`
}

// ParseUsage returns the top-level "usage" object of a JSON response body
// (or of one SSE event's data), ok false when there is none (absent, null,
// or the body is not a JSON object). A Responses API stream carries it one
// level down, in the final event's "response" object
// ({"type":"response.completed","response":{...,"usage":{...}}}), which is
// read too. Bodies without the word "usage" are rejected by a single byte
// search before any scanning.
func ParseUsage(b []byte) (u Usage, ok bool) {
	return parseUsage(b, true)
}

func parseUsage(b []byte, descend bool) (u Usage, ok bool) {
	if bytes.Index(b, []byte(`"usage"`)) < 0 {
		return u, false
	}
	var span, response []byte
	err := eachTopLevel(b, func(key []byte, esc bool, vs, ve int) error {
		switch {
		case isKey(key, esc, "usage"):
			span = nil
			if b[vs] == '{' {
				span = b[vs:ve]
			}
		case descend && isKey(key, esc, "response"):
			response = nil
			if b[vs] == '{' {
				response = b[vs:ve]
			}
		}
		return nil
	})
	if err != nil {
		return u, false
	}
	if span == nil {
		if response == nil {
			return u, false
		}
		return parseUsage(response, false)
	}
	var j usageJSON
	if json.Unmarshal(span, &j) != nil {
		return u, false
	}
	return Usage{Input: j.PromptTokens + j.InputTokens, Output: j.CompletionTokens + j.OutputTokens}, true
}

// SSEData returns the payload of an SSE event's data lines when the event
// has exactly one (the OpenAI streams' shape), without copying.
func SSEData(event []byte) ([]byte, bool) {
	var data []byte
	n := 0
	for len(event) > 0 {
		line := event
		if i := bytes.IndexByte(event, '\n'); i >= 0 {
			line, event = event[:i], event[i+1:]
		} else {
			event = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimPrefix(v, []byte{' '})
			n++
		}
	}
	return data, n == 1
}
