package harness

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// OTLPReceiver is an in-process OpenTelemetry collector: it accepts OTLP
// trace exports over gRPC on loopback and keeps every span, so a test can
// assert what real binaries traced.
type OTLPReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	// Addr is "127.0.0.1:port"; pass "http://"+Addr as --tracing-endpoint.
	Addr string

	mu    sync.Mutex
	spans []Span
}

// Span is one received span, flattened for assertions.
type Span struct {
	Service           string
	TraceID, SpanID   string
	ParentID          string
	Name              string
	Kind              tracepb.Span_SpanKind
	StartNs, EndNs    uint64
	Attrs             map[string]string
	Events            []SpanEvent
	StatusError       bool
	StatusDescription string
}

// SpanEvent is one event of a span with its attributes.
type SpanEvent struct {
	Name  string
	Attrs map[string]string
}

// StartOTLPReceiver serves OTLP/gRPC until the test ends.
func StartOTLPReceiver(t testing.TB) *OTLPReceiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("OTLP receiver: %v", err)
	}
	r := &OTLPReceiver{Addr: lis.Addr().String()}
	g := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(g, r)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return r
}

// Export implements the OTLP trace service.
func (r *OTLPReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s := Span{
					Service:           service,
					TraceID:           hex.EncodeToString(sp.GetTraceId()),
					SpanID:            hex.EncodeToString(sp.GetSpanId()),
					ParentID:          hex.EncodeToString(sp.GetParentSpanId()),
					Name:              sp.GetName(),
					Kind:              sp.GetKind(),
					StartNs:           sp.GetStartTimeUnixNano(),
					EndNs:             sp.GetEndTimeUnixNano(),
					Attrs:             attrs(sp.GetAttributes()),
					StatusError:       sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
					StatusDescription: sp.GetStatus().GetMessage(),
				}
				for _, ev := range sp.GetEvents() {
					s.Events = append(s.Events, SpanEvent{Name: ev.GetName(), Attrs: attrs(ev.GetAttributes())})
				}
				got = append(got, s)
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	r.mu.Unlock()
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// Spans returns the spans received so far that match keep (all with nil).
func (r *OTLPReceiver) Spans(keep func(Span) bool) []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Span
	for _, s := range r.spans {
		if keep == nil || keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// Tree renders spans as an indented tree (children in start order) with
// their durations and attributes, for test logs and docs.
func Tree(spans []Span) string {
	ids := map[string]bool{}
	children := map[string][]Span{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	var roots []Span
	for _, s := range spans {
		if ids[s.ParentID] {
			children[s.ParentID] = append(children[s.ParentID], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(ss []Span) {
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].StartNs < ss[j].StartNs })
	}
	var b strings.Builder
	var walk func(s Span, depth int, t0 uint64)
	walk = func(s Span, depth int, t0 uint64) {
		fmt.Fprintf(&b, "%s%s [%s] +%.3fms %.3fms %s\n", strings.Repeat("  ", depth), s.Name, s.Service,
			float64(s.StartNs-t0)/1e6, float64(s.EndNs-s.StartNs)/1e6, formatAttrs(s.Attrs))
		for _, ev := range s.Events {
			fmt.Fprintf(&b, "%s  · %s %s\n", strings.Repeat("  ", depth), ev.Name, formatAttrs(ev.Attrs))
		}
		kids := children[s.SpanID]
		byStart(kids)
		for _, c := range kids {
			walk(c, depth+1, t0)
		}
	}
	byStart(roots)
	for _, r := range roots {
		walk(r, 0, r.StartNs)
	}
	return b.String()
}

func formatAttrs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

// attrs flattens OTLP attributes to strings (arrays as [a b c]).
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.GetKey()] = value(kv.GetValue())
	}
	return out
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_ArrayValue:
		parts := make([]string, len(x.ArrayValue.GetValues()))
		for i, e := range x.ArrayValue.GetValues() {
			parts[i] = value(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprint(v)
}
