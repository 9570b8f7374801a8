package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/server"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func TestOpenAIValidation(t *testing.T) {
	var hits atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			hits.Add(1)
		}
	}))
	t.Cleanup(be.Close)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(pool, 1))}, []backendSpec{pool}))
	for _, tc := range []struct {
		path, body string
		ok         bool
	}{
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, true},
		{"/v1/chat/completions", `{"messages":[]}`, false},
		{"/v1/chat/completions", `{"model":"m","messages":"hi"}`, false},
		{"/v1/chat/completions", `{"model":1,"messages":[]}`, false},
		{"/v1/chat/completions", `{"model":"m","messages":[]`, false},
		{"/v1/completions", `{"model":"m","prompt":["a","b"]}`, true},
		{"/v1/completions", `{"model":"m"}`, false},
		{"/v1/embeddings", `{"model":"m","input":"x"}`, true},
		{"/v1/embeddings", `{"model":"m","input":null}`, false},
		{"/v1/responses", `{"model":"m","input":"x"}`, true},
		{"/v1/responses", `{"input":"x"}`, false},
		{"/v1/other", `{}`, true},
	} {
		resp, err := http.Post(url(port, tc.path), "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.ok {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s %s: status %d", tc.path, tc.body, resp.StatusCode)
			}
			continue
		}
		before := hits.Load()
		expectError(t, resp, 400, "invalid_request")
		if hits.Load() != before {
			t.Errorf("%s %s reached the pool", tc.path, tc.body)
		}
	}
	if hits.Load() != 5 {
		t.Errorf("%d requests reached the pool, want the 5 valid ones", hits.Load())
	}
}

// modelServer answers like vLLM, naming the model it was asked for.
func modelServer(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"object":"list","data":[{"id":"base-model","object":"model"},{"id":"food-review-lora","object":"model"}]}`)
			return
		}
		var req struct {
			Model  string `json:"model"`
			Stream bool   `json:"stream"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","model":%q,"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`, req.Model)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: {\"id\":\"c1\",\"model\":%q,\"choices\":[{\"delta\":{\"content\":\"t%d\"}}]}\n\n", req.Model, i)
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, "data: {\"id\":\"c1\",\"model\":%q,\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n", req.Model)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestModelRestoredInResponses(t *testing.T) {
	be := modelServer(t)
	_, port := foodReviewPool(t, be)

	resp, err := http.Post(url(port, "/v1/chat/completions"), "application/json", strings.NewReader(`{"model":"food-review","messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `{"id":"c1","object":"chat.completion","model":"food-review","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`
	if string(b) != want {
		t.Errorf("JSON response %s", b)
	}

	resp, err = http.Post(url(port, "/v1/chat/completions"), "application/json", strings.NewReader(`{"model":"food-review","messages":[],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	var events []string
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(line, "data: ") {
			events = append(events, strings.TrimSpace(line[6:]))
		}
	}
	if len(events) != 5 || events[4] != "[DONE]" {
		t.Fatalf("events %q", events)
	}
	for _, e := range events[:4] {
		if !strings.Contains(e, `"model":"food-review"`) || strings.Contains(e, "lora") {
			t.Errorf("event not restored: %s", e)
		}
	}
}

func TestListModels(t *testing.T) {
	be := modelServer(t)
	_, port := foodReviewPool(t, be)
	if _, got := listModels(t, port); got != "base-model,food-review,food-review-lora" {
		t.Errorf("models %q", got)
	}
}

// recordingPicker remembers the priority of the last request.
type recordingPicker struct{ last atomic.Int32 }

func (p *recordingPicker) Pick(req *picker.Request, c []*endpoints.Endpoint) (*endpoints.Endpoint, error) {
	p.last.Store(req.Priority)
	return picker.LeastInFlight{}.Pick(req, c)
}

func TestPriorityFromObjectiveThenModel(t *testing.T) {
	rec := &recordingPicker{}
	m := newManagerWith(t, server.Options{Pipeline: pipeline.Options{PickerFor: func(*config.Backend) picker.Picker { return rec }}})
	be := modelServer(t)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	port := freePort(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(pool, 1))}, []backendSpec{pool},
		&snapshotv1.ModelRule{Name: gw + "/m", Pool: pool.resourceName(), ModelName: "critical-model", Priority: 5},
		&snapshotv1.ModelRule{Name: gw + "/o", Pool: pool.resourceName(), Objective: "batch", Priority: -1}))
	for _, tc := range []struct {
		model, objective string
		want             int32
	}{
		{"critical-model", "", 5},
		{"critical-model", "batch", -1},
		{"critical-model", "unknown", 5},
		{"other", "batch", -1},
		{"other", "", 0},
	} {
		req, _ := http.NewRequest("POST", url(port, "/v1/completions"), strings.NewReader(`{"model":"`+tc.model+`","prompt":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		if tc.objective != "" {
			req.Header.Set("X-Gateway-Inference-Objective", tc.objective)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := rec.last.Load(); got != tc.want {
			t.Errorf("model %q objective %q: priority %d, want %d", tc.model, tc.objective, got, tc.want)
		}
	}
}

// firstBytePicker counts the first bytes the pipeline tells it of.
type firstBytePicker struct {
	recordingPicker
	firstBytes atomic.Int32
}

func (p *firstBytePicker) FirstByte(*picker.Request, *endpoints.Endpoint, time.Time) {
	p.firstBytes.Add(1)
}

// A picker that wants first bytes (picker.FirstByter) hears of a
// successful stream's first token once, when its second event ends —
// not at an empty role chunk sent before prefill, and before the stream
// ends — and of no error response's.
func TestFirstByteToldToPicker(t *testing.T) {
	rec := &firstBytePicker{}
	m := newManagerWith(t, server.Options{Pipeline: pipeline.Options{PickerFor: func(*config.Backend) picker.Picker { return rec }}})
	release, step := make(chan struct{}), make(chan struct{})
	var once sync.Once
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			http.NotFound(w, r)
			return
		}
		if strings.Contains(r.URL.Path, "fail") {
			http.Error(w, "engine error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-step:
		case <-release: // the test failed early
		}
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t\"}}]}\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(be.Close)
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before be.Close
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	port := freePort(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(pool, 1))}, []backendSpec{pool}))
	post := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", url(port, path), strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := post("/v1/chat/completions")
	body := bufio.NewReader(resp.Body)
	line, err := body.ReadString('\n')
	if err != nil || !strings.Contains(line, "role") {
		t.Fatalf("first line %q, %v", line, err)
	}
	// Only the role chunk is out: no token yet.
	if n := rec.firstBytes.Load(); n != 0 {
		t.Fatalf("told %d first bytes at the role chunk, want 0", n)
	}
	close(step)
	for !strings.Contains(line, `"t"`) {
		if line, err = body.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	// The first token is out and the stream still open.
	if n := rec.firstBytes.Load(); n != 1 {
		t.Fatalf("told %d first bytes while the stream is open, want 1", n)
	}
	once.Do(func() { close(release) })
	io.Copy(io.Discard, resp.Body)
	if n := rec.firstBytes.Load(); n != 1 {
		t.Fatalf("told %d first bytes after the stream, want 1", n)
	}
	fail := post("/v1/fail")
	io.Copy(io.Discard, fail.Body)
	if fail.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d, want the backend's 500", fail.StatusCode)
	}
	if n := rec.firstBytes.Load(); n != 1 {
		t.Fatalf("told %d first bytes after an error response, want still 1", n)
	}
}
