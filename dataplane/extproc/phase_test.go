package extproc

import (
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/extproc/extproctest"
)

func TestRequestPhase(t *testing.T) {
	hdr := extproctest.HeadersAnswer("10.0.0.1:8000", "")
	replace := func(st extprocv3.CommonResponse_ResponseStatus, b []byte) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{Status: st, BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: b}}},
		}}}
	}
	whole := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
		Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte("new")}}}}}}
	clearBody := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
		Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}}}}}
	trailers := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	cases := []struct {
		name     string
		chunks   int
		answers  []*extprocv3.ProcessingResponse
		doneAt   int // index of the answer completing the phase, -1 never
		err      bool
		body     string
		replaced bool
	}{
		{"no body: headers answer", 0, []*extprocv3.ProcessingResponse{hdr}, 0, false, "", false},
		{"acks then headers", 2, []*extprocv3.ProcessingResponse{extproctest.BodyAck(), extproctest.BodyAck(), hdr}, 2, false, "", false},
		{"headers then acks", 2, []*extprocv3.ProcessingResponse{hdr, extproctest.BodyAck(), extproctest.BodyAck()}, 2, false, "", false},
		{"missing ack", 2, []*extprocv3.ProcessingResponse{hdr, extproctest.BodyAck()}, -1, false, "", false},
		{"streamed", 1, []*extprocv3.ProcessingResponse{hdr, extproctest.StreamedBody([]byte("a"), false), extproctest.StreamedBody([]byte("b"), true)}, 2, false, "ab", true},
		{"streamed empty", 1, []*extprocv3.ProcessingResponse{hdr, extproctest.StreamedBody(nil, true)}, 1, false, "", true},
		{"whole", 3, []*extprocv3.ProcessingResponse{whole, hdr}, 1, false, "new", true},
		{"cleared", 1, []*extprocv3.ProcessingResponse{clearBody, hdr}, 1, false, "", true},
		{"continue and replace", 2, []*extprocv3.ProcessingResponse{replace(extprocv3.CommonResponse_CONTINUE_AND_REPLACE, []byte("r"))}, 0, false, "r", true},
		{"body mutation on a plain headers answer is ignored", 1, []*extprocv3.ProcessingResponse{replace(extprocv3.CommonResponse_CONTINUE, []byte("r")), extproctest.BodyAck()}, 1, false, "", false},
		{"two headers answers", 1, []*extprocv3.ProcessingResponse{hdr, hdr}, -1, true, "", false},
		{"too many acks", 1, []*extprocv3.ProcessingResponse{extproctest.BodyAck(), extproctest.BodyAck()}, -1, true, "", false},
		{"body answer without a body", 0, []*extprocv3.ProcessingResponse{extproctest.BodyAck()}, -1, true, "", false},
		{"streamed after ack", 2, []*extprocv3.ProcessingResponse{extproctest.BodyAck(), extproctest.StreamedBody(nil, true)}, -1, true, "", false},
		{"ack within streamed", 2, []*extprocv3.ProcessingResponse{extproctest.StreamedBody(nil, false), extproctest.BodyAck()}, -1, true, "", false},
		{"trailers", 1, []*extprocv3.ProcessingResponse{trailers}, -1, true, "", false},
		{"nil response", 1, []*extprocv3.ProcessingResponse{{}}, -1, true, "", false},
		{"streamed too large", 1, []*extprocv3.ProcessingResponse{extproctest.StreamedBody(make([]byte, 11), true)}, -1, true, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newRequestPhase(tc.chunks, 10)
			done, at := false, -1
			var err error
			for i, a := range tc.answers {
				if done, err = s.handle(a); err != nil || done {
					at = i
					break
				}
			}
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if err != nil {
				if !errors.Is(err, errProtocol) {
					t.Fatalf("error %v is not a protocol error", err)
				}
				return
			}
			if !done {
				at = -1
			}
			if at != tc.doneAt {
				t.Fatalf("done at %d, want %d", at, tc.doneAt)
			}
			if done && (string(s.body) != tc.body || s.replaced != tc.replaced) {
				t.Fatalf("body %q replaced %v, want %q %v", s.body, s.replaced, tc.body, tc.replaced)
			}
		})
	}
}

func TestImmediate(t *testing.T) {
	for _, tc := range []struct {
		ir   *extprocv3.ImmediateResponse
		want int
		err  bool
	}{
		{&extprocv3.ImmediateResponse{}, 200, false},
		{&extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}}, 503, false},
		{&extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: 42}}, 0, true},
		{&extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: 700}}, 0, true},
		{&extprocv3.ImmediateResponse{Body: make([]byte, 11)}, 0, true},
		{&extprocv3.ImmediateResponse{Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "bad name"}}}}}, 0, true},
	} {
		im, err := immediateOf(tc.ir, 10)
		if (err != nil) != tc.err || (err == nil && im.Status != tc.want) {
			t.Errorf("%v: %+v %v", tc.ir, im, err)
		}
	}
}

func TestMutations(t *testing.T) {
	opt := func(k, v string, append *bool, act corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}, AppendAction: act}
		if append != nil {
			o.Append = wrapperspb.Bool(*append)
		}
		return o
	}
	yes, no := true, false
	var m mutations
	err := m.add(&extprocv3.HeaderMutation{
		RemoveHeaders: []string{"x-gone", ":path", "Host", "content-length"},
		SetHeaders: []*corev3.HeaderValueOption{
			opt("x-set", "1", nil, 0),
			opt("x-add", "2", &yes, 0),
			opt("x-set-false", "3", &no, corev3.HeaderValueOption_ADD_IF_ABSENT), // the wrapper decides
			opt("x-absent", "4", nil, corev3.HeaderValueOption_ADD_IF_ABSENT),
			opt("x-present", "5", nil, corev3.HeaderValueOption_ADD_IF_ABSENT),
			opt("x-overwrite", "6", nil, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			opt("x-overwrite-missing", "7", nil, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			opt(":path", "/evil", nil, 0),
			opt(":authority", "evil", nil, 0),
			opt("host", "evil", nil, 0),
			opt("Content-Length", "1", nil, 0),
			opt("transfer-encoding", "chunked", nil, 0),
			{Header: &corev3.HeaderValue{Key: "x-plain", Value: "8"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"X-Gone": {"a"}, "X-Add": {"0"}, "X-Set": {"a", "b"}, "X-Set-False": {"z"}, "X-Present": {"p"},
		"X-Overwrite": {"o"}, "Host": {"h"}, "Content-Length": {"9"}}
	m.apply(h)
	want := http.Header{"X-Add": {"0", "2"}, "X-Set": {"1"}, "X-Set-False": {"3"}, "X-Absent": {"4"}, "X-Present": {"p"},
		"X-Overwrite": {"6"}, "Host": {"h"}, "Content-Length": {"9"}, "X-Plain": {"8"}}
	if !headersEqual(h, want) {
		t.Fatalf("got %v\nwant %v", h, want)
	}

	for name, hm := range map[string]*extprocv3.HeaderMutation{
		"bad name":     {SetHeaders: []*corev3.HeaderValueOption{opt("x y", "1", nil, 0)}},
		"bad value":    {SetHeaders: []*corev3.HeaderValueOption{opt("x", "a\r\nb", nil, 0)}},
		"bad removal":  {RemoveHeaders: []string{"a b"}},
		"too many":     {RemoveHeaders: make([]string, MaxHeaderMutations+1)},
		"too long":     {SetHeaders: []*corev3.HeaderValueOption{opt("x", strings.Repeat("v", MaxHeaderMutationBytes), nil, 0)}},
		"nul in value": {SetHeaders: []*corev3.HeaderValueOption{opt("x", "a\x00", nil, 0)}},
	} {
		var m mutations
		if err := m.add(hm); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

func TestDestinationList(t *testing.T) {
	list := structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("10.0.0.3:1"), structpb.NewNumberValue(1)}})
	lb := &structpb.Struct{Fields: map[string]*structpb.Value{DestinationKey: list, FallbackKey: structpb.NewStringValue(" 10.0.0.4:1 ")}}
	got := destinationList(" 10.0.0.1:1,,10.0.0.2:1 , 10.0.0.1:1", lb)
	if strings.Join(got, "|") != "10.0.0.1:1|10.0.0.2:1|10.0.0.3:1|10.0.0.4:1" {
		t.Fatalf("list %q", got)
	}
	long := strings.Repeat("10.0.0.1:1,", 10) + strings.Repeat("x,", 200)
	if got := destinationList(long, nil); len(got) > MaxDestinations {
		t.Fatalf("%d entries kept", len(got))
	}
	for in, want := range map[string]string{"10.0.0.1:80": "10.0.0.1:80", "[::ffff:10.0.0.1]:80": "10.0.0.1:80",
		"[FD00::1]:80": "[fd00::1]:80", "[fe80::1%eth0]:80": "[fe80::1]:80", "10.0.0.1": "", "10.0.0.1:0": "", "host:80": ""} {
		got, ok := canonicalAddr(in)
		if ok != (want != "") || got != want {
			t.Errorf("canonicalAddr(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

// FuzzRequestPhase feeds arbitrary answer sequences (length-prefixed
// ProcessingResponse messages) to the request phase and checks what it
// accepts against the bounds: endpoints only of the pool, a body within
// the limit, header edits that are valid and never touch what the proxy
// owns.
func FuzzRequestPhase(f *testing.F) {
	seed := func(chunks uint8, answers ...*extprocv3.ProcessingResponse) []byte {
		b := []byte{chunks}
		for _, a := range answers {
			raw, _ := proto.Marshal(a)
			b = binary.AppendUvarint(b, uint64(len(raw)))
			b = append(b, raw...)
		}
		return b
	}
	f.Add(seed(1, extproctest.BodyAck(), extproctest.HeadersAnswer("10.0.0.1:8000", "10.0.0.1:8000")))
	f.Add(seed(1, extproctest.HeadersAnswer("", "10.0.0.9:1,[fd00::3]:8000,garbage"), extproctest.StreamedBody([]byte("{}"), true)))
	f.Add(seed(0, extproctest.HeadersAnswer("10.0.0.2:8000", "", &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: ":path", Value: "/x"}})))
	f.Add(seed(2, &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{Body: []byte("x")}}}))
	f.Add(seed(1, &extprocv3.ProcessingResponse{DynamicMetadata: extproctest.LBMetadata(DestinationKey, structpb.NewNumberValue(3))}))
	f.Add(seed(1, &extprocv3.ProcessingResponse{DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{LBNamespace: structpb.NewStringValue("x")}}}))
	byAddr := map[string]*endpoints.Endpoint{}
	for _, a := range []string{"10.0.0.1:8000", "10.0.0.2:8000", "[fd00::3]:8000"} {
		byAddr[a] = endpoints.New(endpoints.Spec{Address: a})
	}
	const maxBody = 4 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		s := newRequestPhase(int(data[0]%4), maxBody)
		data = data[1:]
		for len(data) > 0 {
			n, k := binary.Uvarint(data)
			if k <= 0 || n > uint64(len(data)-k) {
				return
			}
			msg := &extprocv3.ProcessingResponse{}
			if proto.Unmarshal(data[k:k+int(n)], msg) != nil {
				return
			}
			data = data[k+int(n):]
			done, err := s.handle(msg)
			if err != nil {
				if !errors.Is(err, errProtocol) {
					t.Fatalf("error %v is not a protocol error", err)
				}
				return
			}
			if done {
				break
			}
		}
		if len(s.body) > maxBody {
			t.Fatalf("body of %d bytes accepted", len(s.body))
		}
		if len(s.muts.edits) > MaxHeaderMutations || s.muts.bytes > MaxHeaderMutationBytes {
			t.Fatalf("%d edits of %d bytes accepted", len(s.muts.edits), s.muts.bytes)
		}
		for _, e := range s.muts.edits {
			if !httpguts.ValidHeaderFieldName(e.name) || !httpguts.ValidHeaderFieldValue(e.value) || !mutable(e.name) {
				t.Fatalf("edit %+v accepted", e)
			}
		}
		list := s.destinations()
		if len(list) > MaxDestinations {
			t.Fatalf("%d destinations", len(list))
		}
		dests, refused := resolveDestinations(list, byAddr)
		if len(dests)+len(refused) > len(list) {
			t.Fatal("more results than entries")
		}
		for _, d := range dests {
			if byAddr[d.Address] != d {
				t.Fatalf("destination %s outside the pool", d.Address)
			}
		}
		if im := s.immediate; im != nil && (im.Status < 200 || im.Status > 599 || len(im.Body) > maxBody) {
			t.Fatalf("immediate %d with %d bytes", im.Status, len(im.Body))
		}
		h := http.Header{}
		s.muts.apply(h)
		for k := range h {
			if !httpguts.ValidHeaderFieldName(k) {
				t.Fatalf("header %q produced", k)
			}
		}
	})
}
