package openai

import "fmt"

// Endpoint is an OpenAI API the gateway knows the request shape of.
type Endpoint int

// Known endpoints; Unknown bodies are forwarded unchecked.
const (
	Unknown Endpoint = iota
	ChatCompletions
	Completions
	Embeddings
	Responses
)

// EndpointOf returns the API a request path names.
func EndpointOf(path string) Endpoint {
	switch path {
	case "/v1/chat/completions":
		return ChatCompletions
	case "/v1/completions":
		return Completions
	case "/v1/embeddings":
		return Embeddings
	case "/v1/responses":
		return Responses
	}
	return Unknown
}

// field requirements: the JSON kinds a required field may have.
const (
	kindString = 1 << iota
	kindArray
	kindObject
)

type requirement struct {
	name  string
	kinds int
}

var requirements = [...][]requirement{
	ChatCompletions: {{"model", kindString}, {"messages", kindArray}},
	Completions:     {{"model", kindString}, {"prompt", kindString | kindArray}},
	Embeddings:      {{"model", kindString}, {"input", kindString | kindArray}},
	Responses:       {{"model", kindString}},
}

// Validate checks the cheap, structural part of a request body for ep: a
// JSON object with its required top-level fields of the right kind
// ("model" a string, "messages" an array, ...). It scans the body once
// without decoding it; the model server still validates the rest. The
// error message is meant for the client (HTTP 400).
func Validate(ep Endpoint, body []byte) error {
	return ScanBody(ep, body).Invalid
}

// Scan is what one pass over a request body finds.
type Scan struct {
	// Model is the top-level "model" string when HasModel.
	Model    ModelField
	HasModel bool
	// Invalid says why the body does not fit ep (nil when it does, or
	// for Unknown endpoints).
	Invalid error
	// NotJSON is set when the body is not a well-formed JSON object.
	NotJSON error
	// MaxTokens is the request's output bound (max_tokens,
	// max_completion_tokens or max_output_tokens, a positive integer), 0
	// when it gives none.
	MaxTokens int64
}

// ScanBody finds the model and validates the body for ep in a single
// scan, so a 200 KB prompt is read once on the request path.
func ScanBody(ep Endpoint, body []byte) Scan {
	var (
		sc   Scan
		reqs []requirement
		seen [4]byte // kind of each requirement's value, 0 if absent
	)
	if ep != Unknown {
		reqs = requirements[ep]
	}
	err := eachTopLevel(body, func(key []byte, esc bool, vs, ve int) error {
		if isKey(key, esc, "model") {
			sc.Model, sc.HasModel = ModelField{}, false
			if body[vs] == '"' {
				name, err := decodeString(body[vs:ve])
				if err != nil {
					return err
				}
				sc.Model, sc.HasModel = ModelField{Name: name, Start: vs, End: ve}, true
			}
		}
		for i, r := range reqs {
			if isKey(key, esc, r.name) {
				seen[i] = body[vs]
			}
		}
		if isKey(key, esc, "max_tokens") || isKey(key, esc, "max_completion_tokens") || isKey(key, esc, "max_output_tokens") {
			if v, ok := parseJSONInt(body[vs:ve]); ok && v > 0 {
				sc.MaxTokens = v
			}
		}
		return nil
	})
	if err != nil {
		sc = Scan{NotJSON: err}
		if ep != Unknown {
			sc.Invalid = fmt.Errorf("request body is not a valid JSON object: %v", err)
		}
		return sc
	}
	for i, r := range reqs {
		c := seen[i]
		if c == 0 || c == 'n' {
			sc.Invalid = fmt.Errorf("missing required parameter: '%s'", r.name)
			break
		}
		if !(c == '"' && r.kinds&kindString != 0 || c == '[' && r.kinds&kindArray != 0 || c == '{' && r.kinds&kindObject != 0) {
			sc.Invalid = fmt.Errorf("invalid type for '%s': expected %s", r.name, kindNames(r.kinds))
			break
		}
	}
	return sc
}

func kindNames(k int) string {
	switch k {
	case kindString:
		return "a string"
	case kindArray:
		return "an array"
	case kindString | kindArray:
		return "a string or an array"
	}
	return "an object"
}
