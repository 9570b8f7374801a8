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
	if ep == Unknown {
		return nil
	}
	reqs := requirements[ep]
	var seen [4]byte // kind of each requirement's value, 0 if absent
	err := eachTopLevel(body, func(key []byte, esc bool, vs, ve int) error {
		for i, r := range reqs {
			if isKey(key, esc, r.name) {
				seen[i] = body[vs]
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("request body is not a valid JSON object: %v", err)
	}
	for i, r := range reqs {
		c := seen[i]
		if c == 0 || c == 'n' {
			return fmt.Errorf("missing required parameter: '%s'", r.name)
		}
		if !(c == '"' && r.kinds&kindString != 0 || c == '[' && r.kinds&kindArray != 0 || c == '{' && r.kinds&kindObject != 0) {
			return fmt.Errorf("invalid type for '%s': expected %s", r.name, kindNames(r.kinds))
		}
	}
	return nil
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
