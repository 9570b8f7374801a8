package modelsim

import (
	"errors"
	"testing"
)

// FuzzParseRequest feeds arbitrary bodies to every request parser: they must
// never panic, and every rejection must be a 400 OpenAI error.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]}]}`,
		`{"model":"m","prompt":"abc","max_tokens":1}`,
		`{"model":"m","prompt":[1,2,3]}`,
		`{"model":"m","prompt":[[1,2],[3]]}`,
		`{"model":"m","input":["a","b"],"encoding_format":"base64","dimensions":8}`,
		`{"model":"m","messages":null}`,
		`{"model":"m","max_completion_tokens":-1,"messages":[{"role":"u","content":null}]}`,
		`{`, ``, `[]`, `null`, `{"model":1}`,
	} {
		f.Add([]byte(s))
	}
	check := func(t *testing.T, err error) {
		if err == nil {
			return
		}
		var a *apiError
		if !errors.As(err, &a) || a.Status != 400 || a.Message == "" {
			t.Fatalf("rejection is not a 400 API error: %#v", err)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		g, err := ParseChatRequest(body)
		check(t, err)
		if err == nil && (g.Model == "" || g.MaxTokens < 0 || len(g.Prompt) == 0) {
			t.Fatalf("accepted invalid chat request %+v", g)
		}
		g, err = ParseCompletionRequest(body)
		check(t, err)
		if err == nil && (g.Model == "" || g.MaxTokens < 0) {
			t.Fatalf("accepted invalid completion request %+v", g)
		}
		e, err := ParseEmbeddingRequest(body)
		check(t, err)
		if err == nil && (e.Model == "" || len(e.Inputs) == 0 || e.Dimensions < 0) {
			t.Fatalf("accepted invalid embedding request %+v", e)
		}
	})
}
