package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The backend stands in for a model server that costs nothing: whatever
// latency a measurement shows beyond the direct case is the proxy's.
// POST bodies are read fully (as a server must before answering); the
// answer depends on the path:
//
//	/json  a ~300 B chat.completion JSON
//	/sse   200 SSE chunk events flushed one by one, then a usage chunk and [DONE]
//	/ttft  10 SSE events (the first one is the time to first token); with
//	       ?wait=<duration> the first event comes that long after the body
//	       was read, like a model server's prefill
//
// /metrics answers like an idle vLLM so the proxy's scraper sees a
// healthy pool.
func runBackend(addr string) error {
	mux := http.NewServeMux()
	jsonResp := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, this is a short answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":256,"completion_tokens":9,"total_tokens":265}}`)
	chunk := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{"index":0,"delta":{"content":"tok "}}]}` + "\n\n")
	final := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[],"usage":{"prompt_tokens":256,"completion_tokens":200,"total_tokens":456}}` + "\n\ndata: [DONE]\n\n")
	stream := func(w http.ResponseWriter, r *http.Request, n int) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"text/event-stream"}
		f := w.(http.Flusher)
		for range n {
			_, _ = w.Write(chunk)
			f.Flush()
		}
		_, _ = w.Write(final)
	}
	mux.HandleFunc("POST /json", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(jsonResp))}
		_, _ = w.Write(jsonResp)
	})
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) { stream(w, r, 200) })
	mux.HandleFunc("POST /ttft", func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("wait"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				http.Error(w, "wait: "+err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = io.Copy(io.Discard, r.Body) // the prompt arrives before prefill starts
			time.Sleep(d)
		}
		stream(w, r, 10)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0\n")
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 1 << 16}
	return srv.Serve(ln)
}

// prompt returns a chat request whose body is about size bytes.
func prompt(size int, stream bool) []byte {
	const head = `{"model":"bench-model","stream":%t,"messages":[{"role":"user","content":"`
	h := fmt.Sprintf(head, stream)
	tail := `"}]}`
	n := max(size-len(h)-len(tail), 1)
	words := strings.Repeat("lorem ipsum dolor sit amet ", n/27+1)[:n]
	return []byte(h + words + tail)
}
