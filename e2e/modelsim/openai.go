package modelsim

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/infergate/infergate/proto/kvevents"
)

// maxBodyBytes bounds request bodies; larger ones get 413-free 400s via the decoder.
const maxBodyBytes = 8 << 20

// apiError is an OpenAI-style error answer.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

func badRequest(format string, a ...any) *apiError {
	return &apiError{Status: 400, Type: "BadRequestError", Message: fmt.Sprintf(format, a...)}
}

func asAPIError(err error) *apiError {
	var a *apiError
	if errors.As(err, &a) {
		return a
	}
	return badRequest("%v", err)
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    int    `json:"code"`
}

// GenerationRequest is the engine-relevant part of a chat or text completion
// request, after validation.
type GenerationRequest struct {
	Model  string
	Prompt []byte // rendered prompt text (chat template applied)
	// TokenIDs: a completion prompt given as token ids (Prompt holds them
	// as CharsPerToken bytes each).
	TokenIDs     []uint32
	Chat         bool // from a chat request: Prompt is a rendered template
	MaxTokens    int  // 0 = not given: the simulator picks a deterministic length
	Stream       bool
	IncludeUsage bool
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatRequest struct {
	Model               string         `json:"model"`
	Messages            []chatMessage  `json:"messages"`
	MaxTokens           *int           `json:"max_tokens"`
	MaxCompletionTokens *int           `json:"max_completion_tokens"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
	N                   *int           `json:"n"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int            `json:"max_tokens"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	N             *int            `json:"n"`
}

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
}

// EmbeddingRequest is a validated embeddings request.
type EmbeddingRequest struct {
	Model      string
	Inputs     [][]byte
	Base64     bool
	Dimensions int // 0 = the simulator's default
}

func decodeStrict(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("request body is empty")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("invalid JSON body: %v", err)
	}
	return nil
}

func maxTokensOf(a, b *int) (int, *apiError) {
	v := a
	if b != nil {
		v = b
	}
	if v == nil {
		return 0, nil
	}
	if *v < 1 {
		return 0, badRequest("max_tokens must be at least 1, got %d", *v)
	}
	return *v, nil
}

func checkN(n *int) *apiError {
	if n != nil && *n != 1 {
		return badRequest("modelsim supports n=1 only")
	}
	return nil
}

// ParseChatRequest validates a /v1/chat/completions body and renders its
// messages with a Llama-3-style chat template, so equal conversation prefixes
// give equal prompt prefixes (and therefore equal KV blocks).
func ParseChatRequest(body []byte) (GenerationRequest, error) {
	var req chatRequest
	if err := decodeStrict(body, &req); err != nil {
		return GenerationRequest{}, err
	}
	if req.Model == "" {
		return GenerationRequest{}, badRequest("model is required")
	}
	if len(req.Messages) == 0 {
		return GenerationRequest{}, badRequest("messages must be a non-empty array")
	}
	if err := checkN(req.N); err != nil {
		return GenerationRequest{}, err
	}
	maxTok, aerr := maxTokensOf(req.MaxTokens, req.MaxCompletionTokens)
	if aerr != nil {
		return GenerationRequest{}, aerr
	}
	prompt := kvevents.AppendLlama3Begin(nil)
	for i, m := range req.Messages {
		if m.Role == "" {
			return GenerationRequest{}, badRequest("messages[%d].role is required", i)
		}
		content, err := messageText(m.Content)
		if err != nil {
			return GenerationRequest{}, badRequest("messages[%d].content: %v", i, err)
		}
		prompt = kvevents.AppendLlama3Message(prompt, m.Role, content)
	}
	prompt = kvevents.AppendLlama3End(prompt)
	return GenerationRequest{
		Model:        req.Model,
		Prompt:       prompt,
		Chat:         true,
		MaxTokens:    maxTok,
		Stream:       req.Stream,
		IncludeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
	}, nil
}

// messageText accepts a string, null, or an array of content parts, of which
// text parts are concatenated (other parts, e.g. images, are ignored).
func messageText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("must be a string or an array of content parts")
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String(), nil
}

// ParseCompletionRequest validates a /v1/completions body. The prompt may be a
// string, a one-element string array, or token IDs (each rendered as
// CharsPerToken bytes so the token count is preserved).
func ParseCompletionRequest(body []byte) (GenerationRequest, error) {
	var req completionRequest
	if err := decodeStrict(body, &req); err != nil {
		return GenerationRequest{}, err
	}
	if req.Model == "" {
		return GenerationRequest{}, badRequest("model is required")
	}
	if err := checkN(req.N); err != nil {
		return GenerationRequest{}, err
	}
	inputs, aerr := parseInputs(req.Prompt, "prompt")
	if aerr != nil {
		return GenerationRequest{}, aerr
	}
	if len(inputs) != 1 {
		return GenerationRequest{}, badRequest("modelsim serves exactly one prompt per request, got %d", len(inputs))
	}
	maxTok, aerr := maxTokensOf(req.MaxTokens, nil)
	if aerr != nil {
		return GenerationRequest{}, aerr
	}
	var ids []uint32
	if toks, ok := tokenPrompt(req.Prompt); ok {
		ids = toks
	}
	return GenerationRequest{
		Model:        req.Model,
		Prompt:       inputs[0],
		TokenIDs:     ids,
		MaxTokens:    maxTok,
		Stream:       req.Stream,
		IncludeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
	}, nil
}

// ParseEmbeddingRequest validates a /v1/embeddings body.
func ParseEmbeddingRequest(body []byte) (EmbeddingRequest, error) {
	var req embeddingRequest
	if err := decodeStrict(body, &req); err != nil {
		return EmbeddingRequest{}, err
	}
	if req.Model == "" {
		return EmbeddingRequest{}, badRequest("model is required")
	}
	inputs, aerr := parseInputs(req.Input, "input")
	if aerr != nil {
		return EmbeddingRequest{}, aerr
	}
	if len(inputs) == 0 {
		return EmbeddingRequest{}, badRequest("input must not be empty")
	}
	if len(inputs) > 2048 {
		return EmbeddingRequest{}, badRequest("at most 2048 inputs per request")
	}
	out := EmbeddingRequest{Model: req.Model, Inputs: inputs}
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		out.Base64 = true
	default:
		return EmbeddingRequest{}, badRequest("encoding_format must be float or base64")
	}
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > 8192 {
			return EmbeddingRequest{}, badRequest("dimensions must be in 1..8192")
		}
		out.Dimensions = *req.Dimensions
	}
	return out, nil
}

// parseInputs accepts string | []string | []int | [][]int.
func parseInputs(raw json.RawMessage, field string) ([][]byte, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, badRequest("%s is required", field)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return [][]byte{[]byte(s)}, nil
	}
	var ss []string
	if err := json.Unmarshal(raw, &ss); err == nil {
		out := make([][]byte, len(ss))
		for i, s := range ss {
			out[i] = []byte(s)
		}
		return out, nil
	}
	var toks []int64
	if err := json.Unmarshal(raw, &toks); err == nil {
		return [][]byte{renderTokens(toks)}, nil
	}
	var tt [][]int64
	if err := json.Unmarshal(raw, &tt); err == nil {
		out := make([][]byte, len(tt))
		for i, t := range tt {
			out[i] = renderTokens(t)
		}
		return out, nil
	}
	return nil, badRequest("%s must be a string, an array of strings, or token IDs", field)
}

// tokenPrompt reads a prompt of token ids (one prompt: [int, ...]).
func tokenPrompt(raw json.RawMessage) ([]uint32, bool) {
	var toks []uint32
	if err := json.Unmarshal(bytes.TrimSpace(raw), &toks); err != nil || len(toks) == 0 {
		return nil, false
	}
	return toks, true
}

func renderTokens(toks []int64) []byte {
	out := make([]byte, 0, 4*len(toks))
	for _, t := range toks {
		out = binary.LittleEndian.AppendUint32(out, uint32(t)) // engine.CharsPerToken bytes per token
	}
	return out
}
