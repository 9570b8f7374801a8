package modelsim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/infergate/infergate/e2e/modelsim/engine"
)

// words are the simulated model's output: token i of a response is a word
// picked deterministically from the response's seed. quotedWords holds them
// JSON-quoted so streaming a token costs no encoding work.
var words = []string{" the", " model", " simulated", " token", " of", " a", " response", " and", " cache",
	" prefix", " batch", " queue", " latency", " is", " to", " in", " for", " with", " on", " decode",
	" prefill", " block", " GPU", " request", " stream", " that", " it", " as", " by", " this", ".", ","}

var quotedWords = func() [][]byte {
	out := make([][]byte, len(words))
	for i, w := range words {
		out[i], _ = json.Marshal(w)
	}
	return out
}()

func wordIndex(seed uint64, i int) int {
	return int((seed + uint64(i)*2654435761) % uint64(len(words)))
}

type usage struct {
	PromptTokens        int           `json:"prompt_tokens"`
	CompletionTokens    int           `json:"completion_tokens"`
	TotalTokens         int           `json:"total_tokens"`
	PromptTokensDetails *promptDetail `json:"prompt_tokens_details,omitempty"`
}

type promptDetail struct {
	CachedTokens int `json:"cached_tokens"`
}

func usageOf(p engine.Progress) usage {
	return usage{
		PromptTokens:        p.PromptTokens,
		CompletionTokens:    p.Generated,
		TotalTokens:         p.PromptTokens + p.Generated,
		PromptTokensDetails: &promptDetail{CachedTokens: p.CachedTokens},
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"error":{"message":"encoding response failed","type":"InternalServerError","code":500}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// generate serves chat (chat=true) and text completions.
func (r *Replica) generate(w http.ResponseWriter, req *http.Request, chat bool) {
	body, ok := r.admit(w, req)
	if !ok {
		return
	}
	var g GenerationRequest
	var err error
	if chat {
		g, err = ParseChatRequest(body)
	} else {
		g, err = ParseCompletionRequest(body)
	}
	if err != nil {
		r.fail(w, asAPIError(err))
		return
	}
	adapter, aerr := r.resolve(g.Model)
	if aerr != nil {
		r.fail(w, aerr)
		return
	}
	finish := "length"
	maxTok := g.MaxTokens
	if maxTok == 0 {
		maxTok, finish = r.defaultOutputLen(g.Prompt), "stop"
	}
	er := engine.NewRequest(g.Prompt, maxTok, adapter)
	er.Tokens = r.tokenIDs(g)
	if err := r.eng.Submit(er); err != nil {
		r.fail(w, r.submitError(err))
		return
	}
	n := r.seq.Add(1)
	prefix, object := "cmpl-", "text_completion"
	if chat {
		prefix, object = "chatcmpl-", "chat.completion"
	}
	resp := response{
		id:      prefix + r.name + "-" + strconv.FormatUint(n, 10),
		object:  object,
		created: time.Now().Unix(),
		model:   g.Model, // echo exactly what was asked for; the gateway relies on it
		chat:    chat,
		finish:  finish,
		seed:    xxhash.Sum64String(r.name) + n,
	}
	if g.Stream {
		r.stream(w, req, er, resp, g.IncludeUsage)
		return
	}
	p, ok := r.wait(req.Context(), er)
	if !ok {
		return
	}
	if p.Err != nil {
		r.fail(w, r.submitError(p.Err))
		return
	}
	r.account(p)
	writeJSON(w, 200, resp.full(p))
}

func (r *Replica) account(p engine.Progress) {
	r.served.Add(1)
	r.promptTokens.Add(int64(p.PromptTokens))
	r.cachedTokens.Add(int64(p.CachedTokens))
	r.genTokens.Add(int64(p.Generated))
}

// response holds what every answer to one completion request shares.
type response struct {
	id, object, model string
	created           int64
	chat              bool
	finish            string
	seed              uint64
}

func (c response) text(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(words[wordIndex(c.seed, i)])
	}
	return b.String()
}

func (c response) full(p engine.Progress) any {
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type choice struct {
		Index        int      `json:"index"`
		Message      *message `json:"message,omitempty"`
		Text         *string  `json:"text,omitempty"`
		Logprobs     any      `json:"logprobs"`
		FinishReason string   `json:"finish_reason"`
	}
	ch := choice{FinishReason: c.finish}
	text := c.text(p.Generated)
	if c.chat {
		ch.Message = &message{Role: "assistant", Content: text}
	} else {
		ch.Text = &text
	}
	return map[string]any{
		"id": c.id, "object": c.object, "created": c.created, "model": c.model,
		"choices": []choice{ch}, "usage": usageOf(p),
	}
}

// chunkFrame returns the bytes before and after a token's quoted text in a
// stream chunk, so each token costs two appends.
func (c response) chunkFrame() (pre, post []byte) {
	id, _ := json.Marshal(c.id)
	model, _ := json.Marshal(c.model)
	head := `data: {"id":` + string(id) + `,"object":"` + c.object + `.chunk","created":` + strconv.FormatInt(c.created, 10) + `,"model":` + string(model) + `,"choices":[{"index":0,`
	if c.chat {
		return []byte(head + `"delta":{"content":`), []byte(`},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	}
	// Legacy completions stream chunks are "text_completion" objects.
	head = `data: {"id":` + string(id) + `,"object":"text_completion","created":` + strconv.FormatInt(c.created, 10) + `,"model":` + string(model) + `,"choices":[{"index":0,`
	return []byte(head + `"text":`), []byte(`,"logprobs":null,"finish_reason":null}]}` + "\n\n")
}

func (c response) chunk(choices any, u *usage) []byte {
	obj := c.object + ".chunk"
	if !c.chat {
		obj = c.object
	}
	m := map[string]any{"id": c.id, "object": obj, "created": c.created, "model": c.model, "choices": choices}
	if u != nil {
		m["usage"] = u
	}
	b, _ := json.Marshal(m)
	return append(append([]byte("data: "), b...), '\n', '\n')
}

// stream writes one SSE chunk per token as the engine produces them, then the
// finish chunk, the usage chunk when asked for, and [DONE].
func (r *Replica) stream(w http.ResponseWriter, req *http.Request, er *engine.Request, c response, includeUsage bool) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	if c.chat {
		_, _ = w.Write(c.chunk([]map[string]any{{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}, "logprobs": nil, "finish_reason": nil}}, nil))
		flush()
	}
	pre, post := c.chunkFrame()
	buf := make([]byte, 0, 4096)
	sent := 0
	for {
		p := er.Progress()
		buf = buf[:0]
		for ; sent < p.Generated; sent++ {
			buf = append(buf, pre...)
			buf = append(buf, quotedWords[wordIndex(c.seed, sent)]...)
			buf = append(buf, post...)
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				r.eng.Cancel(er)
				return
			}
		}
		if p.Done {
			if p.Err != nil {
				e := r.submitError(p.Err)
				r.failed.Add(1)
				b, _ := json.Marshal(errorBody{Error: errorDetail{Message: e.Message, Type: e.Type, Code: e.Status}})
				_, _ = w.Write(append(append([]byte("data: "), b...), '\n', '\n'))
				flush()
				return
			}
			r.account(p)
			var last map[string]any
			if c.chat {
				last = map[string]any{"index": 0, "delta": map[string]any{}, "logprobs": nil, "finish_reason": c.finish}
			} else {
				last = map[string]any{"index": 0, "text": "", "logprobs": nil, "finish_reason": c.finish}
			}
			out := c.chunk([]map[string]any{last}, nil)
			if includeUsage {
				u := usageOf(p)
				out = append(out, c.chunk([]any{}, &u)...)
			}
			out = append(out, "data: [DONE]\n\n"...)
			_, _ = w.Write(out)
			flush()
			return
		}
		if len(buf) > 0 {
			flush()
		}
		select {
		case <-er.Updates():
		case <-req.Context().Done():
			r.eng.Cancel(er)
			return
		}
	}
}

// embeddings runs every input through the engine as a prefill-only request
// (so embeddings load the replica like real prompts) and returns
// deterministic unit vectors derived from the input text.
func (r *Replica) embeddings(w http.ResponseWriter, req *http.Request) {
	body, ok := r.admit(w, req)
	if !ok {
		return
	}
	e, err := ParseEmbeddingRequest(body)
	if err != nil {
		r.fail(w, asAPIError(err))
		return
	}
	adapter, aerr := r.resolve(e.Model)
	if aerr != nil {
		r.fail(w, aerr)
		return
	}
	reqs := make([]*engine.Request, len(e.Inputs))
	for i, in := range e.Inputs {
		reqs[i] = engine.NewRequest(in, 0, adapter)
		if err := r.eng.Submit(reqs[i]); err != nil {
			for _, s := range reqs[:i] {
				r.eng.Cancel(s)
			}
			r.fail(w, r.submitError(err))
			return
		}
	}
	dim := e.Dimensions
	if dim == 0 {
		dim = r.cfg.EmbeddingDim
	}
	type item struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}
	data := make([]item, len(reqs))
	total := 0
	for i, er := range reqs {
		p, ok := r.wait(req.Context(), er)
		if !ok {
			for _, s := range reqs[i+1:] {
				r.eng.Cancel(s)
			}
			return
		}
		if p.Err != nil {
			r.fail(w, r.submitError(p.Err))
			return
		}
		total += p.PromptTokens
		r.promptTokens.Add(int64(p.PromptTokens))
		r.cachedTokens.Add(int64(p.CachedTokens))
		vec := embed(e.Inputs[i], dim)
		data[i] = item{Object: "embedding", Index: i, Embedding: vec}
		if e.Base64 {
			buf := make([]byte, 0, 4*dim)
			for _, f := range vec {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(f))
			}
			data[i].Embedding = base64.StdEncoding.EncodeToString(buf)
		}
	}
	r.served.Add(1)
	writeJSON(w, 200, map[string]any{
		"id": "embd-" + r.name + "-" + strconv.FormatUint(r.seq.Add(1), 10), "object": "list", "model": e.Model, "data": data,
		"usage": map[string]int{"prompt_tokens": total, "total_tokens": total},
	})
}

func embed(in []byte, dim int) []float32 {
	rng := rand.New(rand.NewPCG(xxhash.Sum64(in), 0x9e3779b97f4a7c15))
	v := make([]float32, dim)
	var norm float64
	for i := range v {
		f := rng.NormFloat64()
		v[i] = float32(f)
		norm += f * f
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}
