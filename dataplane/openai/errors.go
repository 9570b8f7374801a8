// Package openai holds the OpenAI-facing pieces of the request path: error
// bodies in the OpenAI shape, and reading the "model" of a JSON request body
// (bounded in size) so it can route the request and be rewritten.
package openai

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error types used by the gateway, as OpenAI clients expect them.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeServer         = "server_error"
	TypeOverloaded     = "overloaded_error"
)

// Error is the OpenAI error object.
type Error struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
}

type errorBody struct {
	Error Error `json:"error"`
}

// WriteError writes {"error":{"message","type","code"}} with status.
func WriteError(w http.ResponseWriter, status int, typ, code, msg string) {
	b, err := json.Marshal(errorBody{Error: Error{Message: msg, Type: typ, Code: code}})
	if err != nil {
		b = []byte(`{"error":{"message":"internal error","type":"server_error","code":"internal"}}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
