package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// Usage is the token accounting of a response. Chat/completions name the
// counts prompt/completion tokens, the Responses API input/output tokens;
// both are folded into Input/Output.
type Usage struct {
	Input  int64
	Output int64
	// Cached is how many input tokens the server served from its prefix
	// cache (prompt_tokens_details.cached_tokens, or input_tokens_details
	// in the Responses API), when CachedKnown: the picker checks its
	// estimate of what the endpoint holds against it.
	Cached      int64
	CachedKnown bool
}

type usageJSON struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	InputTokens      int64 `json:"input_tokens"`
	OutputTokens     int64 `json:"output_tokens"`
}

// usageDetails are the optional breakdowns; decoded apart from the counts
// so that a malformed breakdown loses only the cached count.
type usageDetails struct {
	PromptTokensDetails *tokenDetails `json:"prompt_tokens_details"`
	InputTokensDetails  *tokenDetails `json:"input_tokens_details"`
}

type tokenDetails struct {
	CachedTokens *int64 `json:"cached_tokens"`
}

// slowCached is the cached-token count as encoding/json reads it from a
// usage object: the first details object that carries one.
func slowCached(span []byte) (n int64, ok bool) {
	var d usageDetails
	if json.Unmarshal(span, &d) != nil {
		return 0, false
	}
	for _, t := range [...]*tokenDetails{d.PromptTokensDetails, d.InputTokensDetails} {
		if t != nil && t.CachedTokens != nil {
			return *t.CachedTokens, true
		}
	}
	return 0, false
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
	j, cached, fast := usageFields(span)
	if !fast {
		// Its own variable: one json.Unmarshal is handed escapes, and
		// would cost the fast path an allocation if it were j.
		slow := new(usageJSON)
		if json.Unmarshal(span, slow) != nil {
			return u, false
		}
		j = *slow
		cached.n, cached.ok = slowCached(span)
	}
	u = Usage{Input: j.PromptTokens + j.InputTokens, Output: j.CompletionTokens + j.OutputTokens}
	if cached.ok && cached.n >= 0 {
		u.Cached, u.CachedKnown = cached.n, true
	}
	return u, true
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

// errSlowPath sends a usage object to encoding/json.
var errSlowPath = errors.New("usage: not the common shape")

// usageFields reads the token counts of a usage object without
// encoding/json (a measurable share of the proxy's CPU per response) when
// it has the common shape: the counts as plain integers under their exact
// names. Anything else — escaped names, names encoding/json would match
// case-insensitively, null, fractions, exponents — is left to
// encoding/json (ok false), so the two always agree.
func usageFields(span []byte) (j usageJSON, cached optCount, ok bool) {
	err := eachTopLevel(span, func(key []byte, esc bool, vs, ve int) error {
		if esc {
			return errSlowPath
		}
		var dst *int64
		switch name := key[1 : len(key)-1]; string(name) {
		case "prompt_tokens_details", "input_tokens_details":
			v := span[vs:ve]
			if v[0] != '{' {
				if string(v) == "null" {
					return nil
				}
				return errSlowPath
			}
			n, found, ok := cachedField(v)
			if !ok {
				return errSlowPath
			}
			if found {
				if cached.ok {
					return errSlowPath // both objects: let encoding/json decide
				}
				cached = optCount{n, true}
			}
			return nil
		case "prompt_tokens":
			dst = &j.PromptTokens
		case "completion_tokens":
			dst = &j.CompletionTokens
		case "input_tokens":
			dst = &j.InputTokens
		case "output_tokens":
			dst = &j.OutputTokens
		default:
			if foldsToCount(name) {
				return errSlowPath
			}
			return nil
		}
		v, ok := parseJSONInt(span[vs:ve])
		if !ok {
			return errSlowPath
		}
		*dst = v
		return nil
	})
	return j, cached, err == nil
}

// optCount is a count that may be absent.
type optCount struct {
	n  int64
	ok bool
}

// cachedField reads "cached_tokens" from a details object the way
// usageFields reads the counts (ok false: leave it to encoding/json).
func cachedField(obj []byte) (n int64, found, ok bool) {
	err := eachTopLevel(obj, func(key []byte, esc bool, vs, ve int) error {
		if esc {
			return errSlowPath
		}
		name := key[1 : len(key)-1]
		if string(name) != "cached_tokens" {
			if foldsTo(name, "cached_tokens") {
				return errSlowPath
			}
			return nil
		}
		v, good := parseJSONInt(obj[vs:ve])
		if !good {
			return errSlowPath
		}
		n, found = v, true
		return nil
	})
	return n, found, err == nil
}

// foldsToCount reports whether encoding/json might match name to one of
// the counts (it folds case, Unicode included).
func foldsToCount(name []byte) bool {
	for _, c := range name {
		if c >= 0x80 {
			return true
		}
	}
	return foldsTo(name, "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
		"prompt_tokens_details", "input_tokens_details")
}

// foldsTo reports whether encoding/json might match name to one of
// names (non-ASCII bytes might fold to anything).
func foldsTo(name []byte, names ...string) bool {
	for _, c := range name {
		if c >= 0x80 {
			return true
		}
	}
	for _, n := range names {
		if strings.EqualFold(string(name), n) && string(name) != n {
			return true
		}
	}
	return false
}

// parseJSONInt parses a JSON number that is an integer written without
// fraction or exponent (-?(0|[1-9][0-9]*)) and fits an int64.
func parseJSONInt(b []byte) (int64, bool) {
	d := b
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 1 && d[0] == '0' {
		return 0, false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	return v, err == nil
}
