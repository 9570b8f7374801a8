package modelsim

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/e2e/modelsim/engine"
)

func engineCfg(seqs, waiting int) engine.Config {
	return engine.Config{MaxNumSeqs: seqs, MaxWaiting: waiting}
}

const testModel = DefaultModel

func longPrompt(seed string, chars int) string {
	var b strings.Builder
	for i := 0; b.Len() < chars; i++ {
		b.WriteString(seed)
		b.WriteString(" sentence number ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(". ")
	}
	return b.String()[:chars]
}

func TestChatNonStreaming(t *testing.T) {
	f := startFleet(t, FleetConfig{})
	r := f.Replica(0)
	c := client(r)
	var httpResp *http.Response
	params := openai.ChatCompletionNewParams{
		Model:     testModel,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage(longPrompt("chat", 2000))},
		MaxTokens: openai.Int(7),
	}
	got, err := c.Chat.Completions.New(context.Background(), params, option.WithResponseInto(&httpResp))
	if err != nil {
		t.Fatal(err)
	}
	if h := httpResp.Header.Get(ReplicaHeader); h != r.Name() {
		t.Errorf("replica header %q, want %q", h, r.Name())
	}
	if !strings.HasPrefix(got.ID, "chatcmpl-"+r.Name()+"-") {
		t.Errorf("id %q does not name the replica", got.ID)
	}
	if got.Model != testModel || got.Object != "chat.completion" {
		t.Errorf("model %q object %q", got.Model, got.Object)
	}
	if len(got.Choices) != 1 || got.Choices[0].Message.Content == "" || got.Choices[0].FinishReason != "length" {
		t.Fatalf("choices %+v", got.Choices)
	}
	u := got.Usage
	if u.CompletionTokens != 7 || u.PromptTokens < 500 || u.TotalTokens != u.PromptTokens+7 || u.PromptTokensDetails.CachedTokens != 0 {
		t.Errorf("usage %+v", u)
	}
	// The same conversation again hits the prefix cache for all full blocks but the last token's.
	again, err := c.Chat.Completions.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	cached := again.Usage.PromptTokensDetails.CachedTokens
	if want := (again.Usage.PromptTokens - 1) / 16 * 16; cached != want {
		t.Errorf("cached tokens %d, want %d", cached, want)
	}
	if s := r.Stats(); s.Served != 2 || s.CachedTokens != cached || s.GeneratedTokens != 14 {
		t.Errorf("replica stats %+v", s)
	}
}

func TestChatStreamingWithUsage(t *testing.T) {
	f := startFleet(t, FleetConfig{})
	r := f.Replica(0)
	c := client(r)
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         testModel,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("tell me a story")},
		MaxTokens:     openai.Int(20),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var acc openai.ChatCompletionAccumulator
	contentChunks, finish := 0, ""
	var usage *openai.CompletionUsage
	for stream.Next() {
		ch := stream.Current()
		acc.AddChunk(ch)
		if !strings.HasPrefix(ch.ID, "chatcmpl-"+r.Name()) || ch.Model != testModel {
			t.Fatalf("chunk id %q model %q", ch.ID, ch.Model)
		}
		if len(ch.Choices) > 0 {
			if ch.Choices[0].Delta.Content != "" {
				contentChunks++
			}
			if ch.Choices[0].FinishReason != "" {
				finish = ch.Choices[0].FinishReason
			}
		} else if ch.Usage.TotalTokens > 0 {
			u := ch.Usage
			usage = &u
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if contentChunks != 20 {
		t.Errorf("%d content chunks, want one per token (20)", contentChunks)
	}
	if finish != "length" {
		t.Errorf("finish reason %q", finish)
	}
	if usage == nil || usage.CompletionTokens != 20 || usage.PromptTokens == 0 {
		t.Fatalf("usage chunk %+v", usage)
	}
	if acc.Choices[0].Message.Content == "" {
		t.Error("accumulated content empty")
	}
}

func TestCompletionsStreamingAndLoRA(t *testing.T) {
	f := startFleet(t, FleetConfig{Config: Config{LoRAModules: []string{"sql-lora"}}})
	c := client(f.Replica(0))
	stream := c.Completions.NewStreaming(context.Background(), openai.CompletionNewParams{
		Model:         "sql-lora",
		Prompt:        openai.CompletionNewParamsPromptUnion{OfString: openai.String("SELECT")},
		MaxTokens:     openai.Int(5),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	texts, usageSeen := 0, false
	for stream.Next() {
		ch := stream.Current()
		if ch.Model != "sql-lora" {
			t.Fatalf("model %q", ch.Model)
		}
		if len(ch.Choices) > 0 && ch.Choices[0].Text != "" {
			texts++
		}
		if ch.Usage.CompletionTokens == 5 {
			usageSeen = true
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if texts != 5 || !usageSeen {
		t.Errorf("texts %d usage %v", texts, usageSeen)
	}
	// Non-streaming text completion without max_tokens uses the deterministic default length.
	a, err := c.Completions.New(context.Background(), openai.CompletionNewParams{Model: testModel, Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("abc")}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Completions.New(context.Background(), openai.CompletionNewParams{Model: testModel, Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("abc")}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Usage.CompletionTokens != b.Usage.CompletionTokens || a.Usage.CompletionTokens < 64 || a.Choices[0].FinishReason != "stop" {
		t.Errorf("default lengths %d %d finish %q", a.Usage.CompletionTokens, b.Usage.CompletionTokens, a.Choices[0].FinishReason)
	}
}

func TestEmbeddings(t *testing.T) {
	f := startFleet(t, FleetConfig{})
	c := client(f.Replica(0))
	got, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: testModel,
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first text", "second text", "first text"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Data) != 3 || got.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings %d usage %+v", len(got.Data), got.Usage)
	}
	for i, d := range got.Data {
		if len(d.Embedding) != 384 || d.Index != int64(i) {
			t.Fatalf("embedding %d: len %d index %d", i, len(d.Embedding), d.Index)
		}
		var n float64
		for _, v := range d.Embedding {
			n += v * v
		}
		if math.Abs(n-1) > 1e-3 {
			t.Errorf("embedding %d not unit length: %v", i, n)
		}
	}
	if got.Data[0].Embedding[0] != got.Data[2].Embedding[0] || got.Data[0].Embedding[0] == got.Data[1].Embedding[0] {
		t.Error("embeddings not deterministic per input")
	}
	b64, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: testModel, Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("first text")},
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(b64.Data) != 1 || math.Abs(b64.Data[0].Embedding[0]-got.Data[0].Embedding[0]) > 1e-6 {
		t.Errorf("base64 embedding differs")
	}
}

func TestModels(t *testing.T) {
	f := startFleet(t, FleetConfig{Config: Config{ServedModelNames: []string{"llama", "llama-alias"}, LoRAModules: []string{"a", "b"}}})
	c := client(f.Replica(0))
	page, err := c.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "llama,llama-alias,a,b" {
		t.Errorf("models %v", ids)
	}
	// Served names replace the base name.
	_, err = c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Fatalf("want 404 for the unserved base name, got %v", err)
	}
}

func errorOf(t *testing.T, body string) errorDetail {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" || e.Error.Type == "" || e.Error.Code == 0 {
		t.Fatalf("not an OpenAI error body: %s", body)
	}
	return e.Error
}

func TestErrorsAndFaults(t *testing.T) {
	f := startFleet(t, FleetConfig{Config: Config{EngineConfig: engineCfg(1, 1)}})
	r := f.Replica(0)
	url := r.URL() + "/v1/chat/completions"
	cases := []struct {
		name, body string
		header     []string
		status     int
	}{
		{"bad json", `{"model":`, nil, 400},
		{"empty", ``, nil, 400},
		{"no messages", `{"model":"` + testModel + `"}`, nil, 400},
		{"no model", `{"messages":[{"role":"user","content":"x"}]}`, nil, 400},
		{"bad max_tokens", `{"model":"` + testModel + `","messages":[{"role":"user","content":"x"}],"max_tokens":0}`, nil, 400},
		{"unknown model", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, nil, 404},
		{"forced 503", `{"model":"` + testModel + `","messages":[{"role":"user","content":"x"}]}`, []string{FailHeader, "503"}, 503},
		{"too long", `{"model":"` + testModel + `","messages":[{"role":"user","content":"x"}],"max_tokens":100000}`, nil, 400},
	}
	for _, tc := range cases {
		resp, body := post(t, url, tc.body, tc.header...)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, resp.StatusCode, tc.status, body)
			continue
		}
		if e := errorOf(t, body); e.Code != tc.status {
			t.Errorf("%s: code %d", tc.name, e.Code)
		}
		if resp.Header.Get(ReplicaHeader) != r.Name() {
			t.Errorf("%s: no replica header", tc.name)
		}
	}

	// One running (a very long generation) plus one waiting fill the queue: next is 429.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long := `{"model":"` + testModel + `","messages":[{"role":"user","content":"x"}],"max_tokens":5000}`
	for range 2 {
		req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(long))
		go func() {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Running+r.Stats().Waiting < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	resp, body := post(t, url, long)
	if resp.StatusCode != 429 {
		t.Fatalf("queue full: status %d %s", resp.StatusCode, body)
	}
	errorOf(t, body)
	// Clients going away cancel their requests and free the engine.
	cancel()
	for (r.Stats().Running > 0 || r.Stats().Waiting > 0) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := r.Stats(); s.Running+s.Waiting != 0 || s.KVUsage != 0 {
		t.Errorf("cancelled requests still held: %+v", s)
	}

	r.SetFailRate(1)
	if resp, _ := post(t, url, long); resp.StatusCode != 500 {
		t.Errorf("fail rate 1: status %d", resp.StatusCode)
	}
}

func TestStartupDelayAndFleetAddressing(t *testing.T) {
	f := startFleet(t, FleetConfig{Config: Config{StartupDelay: 10 * time.Second}, Replicas: 3, Address: "127.0.0.21", Port: Port(0), NamePrefix: ""})
	if f.Len() != 3 {
		t.Fatalf("%d replicas", f.Len())
	}
	for i, a := range f.Addrs() {
		wantIP := []string{"127.0.0.21:", "127.0.0.22:", "127.0.0.23:"}[i]
		if !strings.HasPrefix(a, wantIP) || f.Replica(i).Name() != "sim-"+strings.Replace(a, ":", "-", 1) {
			t.Errorf("replica %d addr %s name %s", i, a, f.Replica(i).Name())
		}
	}
	r := f.Replica(0)
	resp, err := http.Get(r.URL() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("health during startup: %d", resp.StatusCode)
	}
	// 10 s simulated = 100 ms at the test scale.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(r.URL() + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never became healthy")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.SetUnavailable(true)
	if resp, _ := post(t, r.URL()+"/v1/completions", `{"model":"`+testModel+`","prompt":"x"}`); resp.StatusCode != 503 {
		t.Errorf("unavailable replica answered %d", resp.StatusCode)
	}
	r.SetUnavailable(false)
	if resp, body := post(t, r.URL()+"/v1/completions", `{"model":"`+testModel+`","prompt":"x","max_tokens":2}`); resp.StatusCode != 200 {
		t.Errorf("available again: %d %s", resp.StatusCode, body)
	}
}

func TestFleetStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f, err := StartFleet(ctx, FleetConfig{Config: Config{TimeScale: testScale}, Listen: []string{"127.0.0.1:0", "127.0.0.1:0"}, NamePrefix: "pod"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if f.ByName("pod-1") != f.Replica(1) || len(f.Stats()) != 2 {
		t.Fatal("names or stats per replica")
	}
	resp, _ := post(t, f.Replica(1).URL()+"/v1/completions", `{"model":"`+testModel+`","prompt":"x","max_tokens":2}`)
	if resp.Header.Get(ReplicaHeader) != "pod-1" {
		t.Errorf("replica header %q", resp.Header.Get(ReplicaHeader))
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(f.Replica(0).URL() + "/health")
		if err != nil {
			break // listener closed
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("fleet still serving after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
