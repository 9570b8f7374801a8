package openai_test

import (
	"encoding/json"
	"testing"

	"github.com/infergate/infergate/dataplane/openai"
)

func TestParseUsage(t *testing.T) {
	for _, tc := range []struct {
		body    string
		in, out int64
		ok      bool
	}{
		{`{"model":"m","usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`, 7, 3, true},
		{`{"object":"response","usage":{"input_tokens":5,"output_tokens":2}}`, 5, 2, true},
		{`{"choices":[{"usage":{"prompt_tokens":1}}],"usage":null}`, 0, 0, false},
		{`{"choices":[{"text":"\"usage\":{}"}]}`, 0, 0, false},
		{`[DONE]`, 0, 0, false},
		{`{"usage":{"prompt_tokens":"x"}}`, 0, 0, false},
		// Responses API stream: usage inside the final event's response.
		{`{"type":"response.completed","sequence_number":9,"response":{"id":"r","status":"completed","usage":{"input_tokens":11,"output_tokens":4,"total_tokens":15}}}`, 11, 4, true},
		{`{"type":"response.output_text.delta","delta":"usage"}`, 0, 0, false},
		{`{"type":"response.created","response":{"id":"r","usage":null}}`, 0, 0, false},
	} {
		u, ok := openai.ParseUsage([]byte(tc.body))
		if ok != tc.ok || u.Input != tc.in || u.Output != tc.out {
			t.Errorf("%s: got %+v %v", tc.body, u, ok)
		}
	}
}

func TestParseUsageCached(t *testing.T) {
	for _, tc := range []struct {
		body   string
		cached int64
		known  bool
	}{
		{`{"usage":{"prompt_tokens":700,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":512}}}`, 512, true},
		{`{"usage":{"input_tokens":9,"output_tokens":2,"input_tokens_details":{"cached_tokens":8}}}`, 8, true},
		{`{"usage":{"prompt_tokens":7,"prompt_tokens_details":null}}`, 0, false},
		{`{"usage":{"prompt_tokens":7,"prompt_tokens_details":{"audio_tokens":0}}}`, 0, false},
		{`{"usage":{"prompt_tokens":7}}`, 0, false},
		// Shapes the fast path leaves to encoding/json.
		{`{"usage":{"prompt_tokens":7,"prompt_tokens_details":{"cached_tokens":6.0}}}`, 0, false},
		{`{"usage":{"prompt_tokens":7,"prompt_tokens_details":{"Cached_Tokens":6}}}`, 6, true},
		{`{"usage":{"prompt_tokens":7,"prompt_tokens_details":5}}`, 0, false},
		{`{"usage":{"prompt_tokens":7,"prompt_tokens_details":{"cached_tokens":-3}}}`, 0, false},
	} {
		u, ok := openai.ParseUsage([]byte(tc.body))
		if !ok || u.CachedKnown != tc.known || u.Cached != tc.cached || u.Input == 0 {
			t.Errorf("%s: got %+v %v", tc.body, u, ok)
		}
	}
}

func TestSSEData(t *testing.T) {
	for _, tc := range []struct {
		ev, data string
		ok       bool
	}{
		{"data: {\"a\":1}\n\n", `{"a":1}`, true},
		{"event: x\r\ndata:[DONE]\r\n\r\n", `[DONE]`, true},
		{": comment\n\n", "", false},
		{"data: a\ndata: b\n\n", "", false},
	} {
		d, ok := openai.SSEData([]byte(tc.ev))
		if ok != tc.ok || (ok && string(d) != tc.data) {
			t.Errorf("%q: got %q %v", tc.ev, d, ok)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := openai.Validate(openai.ChatCompletions, []byte(`{"model":"m","messages":[]}`)); err != nil {
		t.Fatal(err)
	}
	if err := openai.Validate(openai.ChatCompletions, []byte(`{"model":"m","messages":{}}`)); err == nil || err.Error() != "invalid type for 'messages': expected an array" {
		t.Fatal(err)
	}
	if err := openai.Validate(openai.Embeddings, nil); err == nil {
		t.Fatal("empty body accepted")
	}
}

// FuzzParseUsage checks the usage parser against encoding/json on valid
// JSON and that it never panics on anything else, also as SSE event data.
func FuzzParseUsage(f *testing.F) {
	for _, s := range []string{
		`{"usage":{"prompt_tokens":7,"completion_tokens":3}}`,
		`{"usage":null,"x":"\"usage\""}`, `{"usage":{"input_tokens":1}}`, `{"usage":[1]}`, `{"usage"`, `data: [DONE]`,
		`{"usage":{"prompt_tokens":7,"prompt_tokens_details":{"cached_tokens":5}}}`,
		`{"usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":5},"prompt_tokens_details":{}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		u, ok := openai.ParseUsage(b)
		_, _ = openai.SSEData(append([]byte("data: "), append(b, '\n', '\n')...))
		if !json.Valid(b) {
			return
		}
		var v map[string]json.RawMessage
		if json.Unmarshal(b, &v) != nil {
			return
		}
		var want struct {
			P int64 `json:"prompt_tokens"`
			C int64 `json:"completion_tokens"`
			I int64 `json:"input_tokens"`
			O int64 `json:"output_tokens"`
		}
		raw, has := v["usage"]
		wantOK := has && len(raw) > 0 && raw[0] == '{' && json.Unmarshal(raw, &want) == nil
		if ok != wantOK {
			t.Fatalf("%q: ok %v, encoding/json says %v", b, ok, wantOK)
		}
		if ok && (u.Input != want.P+want.I || u.Output != want.C+want.O) {
			t.Fatalf("%q: %+v, want %+v", b, u, want)
		}
		if !ok {
			return
		}
		var details struct {
			P *struct {
				C *int64 `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
			I *struct {
				C *int64 `json:"cached_tokens"`
			} `json:"input_tokens_details"`
		}
		var wantCached int64 = -1
		if json.Unmarshal(raw, &details) == nil {
			switch {
			case details.P != nil && details.P.C != nil:
				wantCached = *details.P.C
			case details.I != nil && details.I.C != nil:
				wantCached = *details.I.C
			}
		}
		gotCached := int64(-1)
		if u.CachedKnown {
			gotCached = u.Cached
		}
		if wantCached < 0 {
			wantCached = -1
		}
		if gotCached != wantCached {
			t.Fatalf("%q: cached %d, encoding/json says %d", b, gotCached, wantCached)
		}
	})
}

// FuzzValidate: never panics on any body, and the combined scan finds the
// same model as FindModel.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{`{"model":"m","messages":[]}`, `{"model":"m","prompt":"x"}`, `{"model":`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		f, ok, err := openai.FindModel(b)
		for ep := openai.Unknown; ep <= openai.Responses; ep++ {
			_ = openai.Validate(ep, b)
			sc := openai.ScanBody(ep, b)
			if sc.HasModel != ok || sc.Model != f || (sc.NotJSON == nil) != (err == nil) {
				t.Fatalf("%q: scan %+v, FindModel (%+v, %v, %v)", b, sc, f, ok, err)
			}
		}
	})
}

// BenchmarkParseUsage: the usage of a chat completion as the proxy reads it
// from every JSON response, against decoding the same object with
// encoding/json (what it did before).
func BenchmarkParseUsage(b *testing.B) {
	body := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,` +
		`"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":512,"completion_tokens":64,"total_tokens":576,"prompt_tokens_details":{"cached_tokens":0}}}`)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if u, ok := openai.ParseUsage(body); !ok || u.Input != 512 {
				b.Fatal(u, ok)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		usage := []byte(`{"prompt_tokens":512,"completion_tokens":64,"total_tokens":576,"prompt_tokens_details":{"cached_tokens":0}}`)
		for b.Loop() {
			var v struct {
				P int64 `json:"prompt_tokens"`
				C int64 `json:"completion_tokens"`
			}
			if json.Unmarshal(usage, &v) != nil || v.P != 512 {
				b.Fatal(v)
			}
		}
	})
}
