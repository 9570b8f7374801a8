package pipeline

import (
	"cmp"
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/metrics"
	"github.com/infergate/infergate/dataplane/openai"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/proto/tracing"
)

// requestTrace is the spans of one request: the request span and, as its
// children, body read, route match, queue wait, each pick and each
// upstream attempt. Steps are recorded after they happened, with their own
// start and end times, so the request path only notes times. It is nil
// when tracing is off, and every method is a no-op on nil: with tracing
// off the request path pays a pointer test per step and nothing else.
type requestTrace struct {
	tracer trace.Tracer
	// ctx carries the request span, parent of every step's span.
	ctx   context.Context
	root  trace.Span
	start time.Time
	w     *statusWriter
	// retryReason is what the latest attempt failed with, set on the next
	// attempt's span.
	retryReason string
	attempts    int
}

// startTrace starts r's request span, continuing the caller's trace when
// r carries a traceparent, and returns the writer the request must answer
// through (it remembers the status for the span); nil when tracing is off.
func (m *Pipeline) startTrace(w http.ResponseWriter, r *http.Request, reqID string) (*requestTrace, http.ResponseWriter) {
	if m.opts.Tracer == nil {
		return nil, w
	}
	ctx := tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	name := r.Method
	if api := openai.EndpointOf(r.URL.Path); api != openai.Unknown {
		name += " " + r.URL.Path // one of a few OpenAI paths: low cardinality
	}
	now := time.Now()
	ctx, root := m.opts.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(now))
	if !root.IsRecording() {
		// Not sampled: nothing to record, but the model server still gets
		// a traceparent continuing the caller's (unsampled) trace.
		rt := &requestTrace{ctx: ctx, root: root}
		return rt, w
	}
	root.SetAttributes(
		semconv.HTTPRequestMethodKey.String(r.Method),
		semconv.URLPath(r.URL.Path),
		semconv.ServerAddress(r.Host),
		attribute.String(tracing.AttrRequestID, reqID),
	)
	sw := &statusWriter{ResponseWriter: w}
	return &requestTrace{tracer: m.opts.Tracer, ctx: ctx, root: root, start: now, w: sw}, sw
}

// recording reports whether the request's spans are recorded (sampled).
func (t *requestTrace) recording() bool { return t != nil && t.tracer != nil }

// step records a finished step as a child span.
func (t *requestTrace) step(name string, start, end time.Time, err error, attrs ...attribute.KeyValue) trace.Span {
	_, sp := t.tracer.Start(t.ctx, name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	if err != nil {
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End(trace.WithTimestamp(end))
	return sp
}

// bodyRead records reading the request body.
func (t *requestTrace) bodyRead(start time.Time, body *openai.Body, err error) {
	if !t.recording() {
		return
	}
	var attrs []attribute.KeyValue
	if body != nil {
		attrs = append(attrs, semconv.HTTPRequestBodySize(body.Len()))
	}
	t.step(tracing.SpanReadBody, start, time.Now(), err, attrs...)
}

// routed records the route match and what it found.
func (t *requestTrace) routed(start time.Time, route *config.Route, model string, api openai.Endpoint) {
	if !t.recording() {
		return
	}
	var attrs []attribute.KeyValue
	if route != nil {
		attrs = append(attrs, attribute.String(tracing.AttrRoute, route.Name))
		t.root.SetAttributes(attrs...)
	}
	t.step(tracing.SpanRoute, start, time.Now(), nil, attrs...)
	if model != "" {
		t.root.SetAttributes(semconv.GenAIRequestModel(model))
	}
	if op := genAIOperation(api); op.Valid() {
		t.root.SetAttributes(op)
	}
}

// genAIOperation is the GenAI semantic conventions' operation of an OpenAI
// endpoint, an empty KeyValue when it has none.
func genAIOperation(api openai.Endpoint) attribute.KeyValue {
	switch api {
	case openai.ChatCompletions, openai.Responses:
		return semconv.GenAIOperationNameChat
	case openai.Completions:
		return semconv.GenAIOperationNameTextCompletion
	case openai.Embeddings:
		return semconv.GenAIOperationNameEmbeddings
	}
	return attribute.KeyValue{}
}

// queued records a wait in a pool's queue.
func (t *requestTrace) queued(start time.Time, pool string, priority int32, admitted bool) {
	if !t.recording() {
		return
	}
	t.step(tracing.SpanQueue, start, time.Now(), nil, attribute.String(tracing.AttrBackend, pool),
		attribute.Int(tracing.AttrPriority, int(priority)), attribute.Bool(tracing.AttrQueued, admitted))
}

// picked records one pick among cands: the endpoint chosen or the error,
// and when the picker explained it (d, nil otherwise) the request's token
// estimates, the chosen endpoint's cost and cached prefix, and an event
// per candidate with its inputs and terms.
func (t *requestTrace) picked(start, end time.Time, backend string, cands int, ep *endpoints.Endpoint, err error, d *picker.Decision) {
	if !t.recording() {
		return
	}
	attrs := []attribute.KeyValue{attribute.String(tracing.AttrBackend, backend), attribute.Int(tracing.AttrCandidates, cands)}
	if ep != nil {
		attrs = append(attrs, attribute.String(tracing.AttrEndpoint, ep.Address))
	}
	if err != nil {
		attrs = append(attrs, attribute.String(tracing.AttrPickError, err.Error()))
	}
	if d == nil {
		t.step(tracing.SpanPick, start, end, err, attrs...)
		return
	}
	attrs = append(attrs, attribute.Float64(tracing.AttrPromptTokens, d.PromptTokens), attribute.Float64(tracing.AttrOutputTokens, d.OutputTokens))
	chosen := -1
	for i := range d.Candidates {
		if d.Candidates[i].Endpoint == d.Chosen {
			chosen = i
			attrs = append(attrs, attribute.Float64(tracing.AttrCost, d.Candidates[i].Cost),
				attribute.Float64(tracing.AttrCachedTokens, d.Candidates[i].CachedTokens))
		}
	}
	_, sp := t.tracer.Start(t.ctx, tracing.SpanPick, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	for _, i := range cheapest(d.Candidates, chosen, tracing.MaxCandidateEvents) {
		c := &d.Candidates[i]
		sp.AddEvent(tracing.EventCandidate, trace.WithTimestamp(end), trace.WithAttributes(
			attribute.String(tracing.AttrEndpoint, c.Endpoint), attribute.Bool("chosen", i == chosen),
			attribute.Float64("waiting", c.Waiting), attribute.Float64("running", c.Running),
			attribute.Float64("kv_usage", c.KVUsage), attribute.Float64("cached_tokens", c.CachedTokens),
			attribute.Bool("fresh", c.Fresh), attribute.Bool("home", c.Home),
			attribute.Float64("wait", c.Wait), attribute.Float64("prefill", c.Prefill), attribute.Float64("decode", c.Decode),
			attribute.Float64("harm", c.Harm), attribute.Float64("lora", c.LoRA), attribute.Float64("displace", c.Displace),
			attribute.Float64("cost", c.Cost)))
	}
	if err != nil {
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End(trace.WithTimestamp(end))
}

// cheapest returns the indexes of the n cheapest candidates, cheapest
// first, with chosen (≥ 0) among them.
func cheapest(cands []picker.CandidateDecision, chosen, n int) []int {
	idx := make([]int, len(cands))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(cands[a].Cost, cands[b].Cost) })
	if len(idx) <= n {
		return idx
	}
	idx = idx[:n]
	if chosen >= 0 && !slices.Contains(idx, chosen) {
		idx[n-1] = chosen
	}
	return idx
}

// attempt starts the span of an upstream attempt to ep and puts its
// context in r's traceparent (and tracestate), so the model server's spans
// join the trace. It returns the span to end with attemptDone.
func (t *requestTrace) attempt(r *http.Request, ep *endpoints.Endpoint) trace.Span {
	if t == nil {
		return nil
	}
	t.attempts++
	ctx, sp := t.ctx, trace.Span(nil)
	if t.recording() {
		attrs := []attribute.KeyValue{
			attribute.String(tracing.AttrEndpoint, ep.Address),
			attribute.Int(tracing.AttrAttempt, t.attempts),
		}
		if host, port, ok := splitHostPort(ep.Address); ok {
			attrs = append(attrs, semconv.ServerAddress(host), semconv.ServerPort(port))
		}
		if t.retryReason != "" {
			attrs = append(attrs, attribute.String(tracing.AttrRetryReason, t.retryReason))
		}
		ctx, sp = t.tracer.Start(t.ctx, tracing.SpanAttempt, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	}
	// The client's traceparent, if any, is replaced by this attempt's
	// (or, unsampled, the request span's) context.
	delete(r.Header, "Tracestate")
	tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return sp
}

// attemptDone ends an attempt's span with how it went: status is the
// upstream's answer (0 for none), err the failure, retry the reason another
// attempt follows ("" when none does).
func (t *requestTrace) attemptDone(sp trace.Span, status int, err error, retry string) {
	if t == nil {
		return
	}
	var failure string
	switch {
	case err != nil:
		failure = err.Error()
	case status >= 500 || (retry != "" && status != 0):
		failure = "status " + strconv.Itoa(status)
	}
	switch {
	case retry == "":
	case failure == "":
		t.retryReason = retry
	case retry == metrics.RetryStatus:
		t.retryReason = failure // "status 503"
	default:
		t.retryReason = retry + ": " + failure // "not_sent: dial tcp …: connection refused"
	}
	if sp == nil {
		return
	}
	if status != 0 {
		sp.SetAttributes(semconv.HTTPResponseStatusCode(status))
	}
	if failure != "" {
		sp.SetStatus(codes.Error, failure)
	}
	sp.End()
}

// answered notes what the model server's answer showed: time to its first
// byte (the first token of a stream) and token usage when it reported any.
func (t *requestTrace) answered(ex *exchange) {
	if !t.recording() {
		return
	}
	if !ex.firstByte.IsZero() {
		t.root.SetAttributes(semconv.GenAIResponseTimeToFirstChunk(ex.firstByte.Sub(t.start).Seconds()),
			semconv.GenAIRequestStream(ex.insp.mode == inspectSSE))
	}
	if ex.insp.found {
		t.root.SetAttributes(semconv.GenAIUsageInputTokens(int(ex.insp.usage.Input)),
			semconv.GenAIUsageOutputTokens(int(ex.insp.usage.Output)))
	}
}

// end ends the request span with the status the client got.
func (t *requestTrace) end() {
	if t == nil {
		return
	}
	if t.w != nil && t.w.status != 0 {
		t.root.SetAttributes(semconv.HTTPResponseStatusCode(t.w.status))
		if t.w.status >= 500 {
			t.root.SetStatus(codes.Error, http.StatusText(t.w.status))
		}
	}
	t.root.End()
}

// now is the time a step starts, zero when the request is not recorded
// (so untraced requests do not even read the clock).
func (t *requestTrace) now() time.Time {
	if !t.recording() {
		return time.Time{}
	}
	return time.Now()
}

// target notes where the request went: the backend and the model sent.
func (t *requestTrace) target(backend, targetModel string, priority int32) {
	if !t.recording() {
		return
	}
	t.root.SetAttributes(attribute.String(tracing.AttrBackend, backend), attribute.Int(tracing.AttrPriority, int(priority)))
	if targetModel != "" {
		t.root.SetAttributes(attribute.String(tracing.AttrTargetModel, targetModel))
	}
}

func splitHostPort(addr string) (string, int, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false
	}
	p, err := strconv.Atoi(port)
	return host, p, err == nil
}

// statusWriter remembers the status a traced request was answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Flush passes flushes on, so streamed events still reach the client.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
