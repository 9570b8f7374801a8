package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/infergate/infergate/dataplane/server"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/tracing"
)

// traceBackend answers the first failFirst POSTs with 503 and the rest with
// a chat completion carrying usage, and records every POST's traceparent.
type traceBackend struct {
	failFirst int32
	posts     atomic.Int32
	mu        sync.Mutex
	parents   []string
}

func (b *traceBackend) start(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.NotFound(w, r) // the proxy's metrics scrapes
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		b.mu.Lock()
		b.parents = append(b.parents, r.Header.Get("Traceparent"))
		b.mu.Unlock()
		if b.posts.Add(1) <= b.failFirst {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"c1","object":"chat.completion","model":"m","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (b *traceBackend) traceparents() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.parents...)
}

// tracedPool serves a pool of one endpoint (be) on a route retrying 503
// once, through a manager tracing with sampler into the returned recorder
// (no tracer at all when sampler is nil).
func tracedPool(t *testing.T, be *httptest.Server, sampler sdktrace.Sampler) (uint32, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	opts := server.Options{}
	if sampler != nil {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sampler))
		t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
		opts.Pipeline.Tracer = tp.Tracer("test")
	}
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	rt := route("chat", "/v1", ref(pool, 1))
	rt.Retry = &snapshotv1.Retry{Attempts: 2, Codes: []uint32{503}}
	port := freePort(t)
	m := newManagerWith(t, opts)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{rt}, []backendSpec{pool}))
	return port, rec
}

func postTracedChat(t *testing.T, port uint32, traceparent string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url(port, "/v1/chat/completions"),
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
		req.Header.Set("Tracestate", "vendor=client")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func attrOf(sp sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range sp.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

const clientTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestTraceSpanTree: a request retried once produces the request span
// (continuing the client's trace) with body, route, pick and attempt
// children carrying their attributes, and each attempt's traceparent
// reaches the model server.
func TestTraceSpanTree(t *testing.T) {
	be := &traceBackend{failFirst: 1}
	port, rec := tracedPool(t, be.start(t), sdktrace.ParentBased(sdktrace.NeverSample()))
	if resp := postTracedChat(t, port, clientTraceparent); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	spans := rec.Ended()
	var root sdktrace.ReadOnlySpan
	children := map[string][]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		if sp.Name() == "POST /v1/chat/completions" {
			root = sp
		}
	}
	if root == nil {
		t.Fatalf("no request span among %d spans", len(spans))
	}
	if got := root.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id %s: the client's trace is not continued", got)
	}
	if root.Parent().SpanID().String() != "00f067aa0ba902b7" || root.SpanKind() != trace.SpanKindServer {
		t.Errorf("request span parent %s kind %v", root.Parent().SpanID(), root.SpanKind())
	}
	for _, sp := range spans {
		if sp != root {
			if sp.Parent().SpanID() != root.SpanContext().SpanID() {
				t.Errorf("span %q is not a child of the request span", sp.Name())
			}
			children[sp.Name()] = append(children[sp.Name()], sp)
		}
	}
	for name, n := range map[string]int{tracing.SpanReadBody: 1, tracing.SpanRoute: 1, tracing.SpanPick: 2, tracing.SpanAttempt: 2} {
		if len(children[name]) != n {
			t.Errorf("%d %q spans, want %d", len(children[name]), name, n)
		}
	}
	for key, want := range map[string]string{
		"http.response.status_code":  "200",
		"gen_ai.request.model":       "m",
		"gen_ai.operation.name":      "chat",
		"gen_ai.usage.input_tokens":  "7",
		"gen_ai.usage.output_tokens": "3",
		tracing.AttrRoute:            "ns/gw/ns/chat/0",
		tracing.AttrBackend:          "ns/pool",
	} {
		if v, ok := attrOf(root, key); !ok || v.Emit() != want {
			t.Errorf("request span %s = %q, want %q", key, v.Emit(), want)
		}
	}
	if v, ok := attrOf(root, "gen_ai.response.time_to_first_chunk"); !ok || v.AsFloat64() <= 0 {
		t.Errorf("no time to first chunk on the request span")
	}
	attempts := children[tracing.SpanAttempt]
	if len(attempts) != 2 {
		t.FailNow()
	}
	first, second := attempts[0], attempts[1]
	if v, _ := attrOf(first, tracing.AttrAttempt); v.AsInt64() != 1 {
		first, second = second, first
	}
	if v, _ := attrOf(first, "http.response.status_code"); v.AsInt64() != 503 || first.Status().Code != codes.Error {
		t.Errorf("first attempt: status %v, span status %v", v.Emit(), first.Status())
	}
	if v, _ := attrOf(second, tracing.AttrRetryReason); v.AsString() != "status 503" {
		t.Errorf("second attempt retry reason %q", v.AsString())
	}
	if v, _ := attrOf(second, tracing.AttrEndpoint); !strings.HasPrefix(v.AsString(), "127.0.0.1:") || second.SpanKind() != trace.SpanKindClient {
		t.Errorf("second attempt endpoint %q kind %v", v.AsString(), second.SpanKind())
	}
	// The pool runs the default profile (the cost model): each pick span
	// carries the request's estimates, the chosen endpoint's cost and
	// cached prefix, and its candidate's terms as an event.
	for _, p := range children[tracing.SpanPick] {
		if v, _ := attrOf(p, tracing.AttrCandidates); v.AsInt64() != 1 {
			t.Errorf("pick candidates %v", v.Emit())
		}
		for _, key := range []string{tracing.AttrPromptTokens, tracing.AttrOutputTokens, tracing.AttrCost, tracing.AttrCachedTokens} {
			if _, ok := attrOf(p, key); !ok {
				t.Errorf("pick span lacks %s: %v", key, p.Attributes())
			}
		}
		if v, _ := attrOf(p, tracing.AttrCost); v.AsFloat64() <= 0 {
			t.Errorf("pick cost %v", v.Emit())
		}
		evs := p.Events()
		if len(evs) != 1 || evs[0].Name != tracing.EventCandidate {
			t.Fatalf("pick events %+v, want one %q", evs, tracing.EventCandidate)
		}
		ev := map[string]attribute.Value{}
		for _, kv := range evs[0].Attributes {
			ev[string(kv.Key)] = kv.Value
		}
		if !ev["chosen"].AsBool() || !strings.HasPrefix(ev[tracing.AttrEndpoint].AsString(), "127.0.0.1:") ||
			ev["prefill"].AsFloat64() <= 0 || ev["decode"].AsFloat64() <= 0 || ev["cost"].AsFloat64() <= 0 {
			t.Errorf("candidate event %v", evs[0].Attributes)
		}
	}
	// Each attempt told the model server its own span as the parent.
	parents := be.traceparents()
	for i, sp := range []sdktrace.ReadOnlySpan{first, second} {
		want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + sp.SpanContext().SpanID().String() + "-01"
		if i >= len(parents) || parents[i] != want {
			t.Errorf("model server got traceparent %q on attempt %d, want %q", parents, i+1, want)
		}
	}
}

// TestTraceOff: without a tracer the client's trace headers reach the model
// server untouched, and with a sampler that records nothing the model
// server still gets a (not sampled) traceparent of the request's trace.
func TestTraceOff(t *testing.T) {
	be := &traceBackend{}
	port, _ := tracedPool(t, be.start(t), nil)
	postTracedChat(t, port, clientTraceparent)
	if p := be.traceparents(); len(p) != 1 || p[0] != clientTraceparent {
		t.Errorf("tracing off: model server got %q, want the client's %q", p, clientTraceparent)
	}

	be2 := &traceBackend{}
	port, rec := tracedPool(t, be2.start(t), sdktrace.NeverSample())
	postTracedChat(t, port, "")
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded by a sampler that samples nothing", n)
	}
	if p := be2.traceparents(); len(p) != 1 || !strings.HasPrefix(p[0], "00-") || !strings.HasSuffix(p[0], "-00") {
		t.Errorf("unsampled: model server got %q, want a traceparent with flags 00", p)
	}
}
