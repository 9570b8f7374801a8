package extproc

import (
	"errors"
	"fmt"
	"net/http"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Immediate is a response the picker asked the proxy to send instead of
// forwarding the request (ImmediateResponse): a shed request's 429, a
// 503 when nothing is ready, or anything else it decides.
type Immediate struct {
	Status int
	Body   []byte
	// Details is the picker's reason, for logs.
	Details string
	headers mutations
}

// WriteHeaders applies the picker's header edits to h.
func (im *Immediate) WriteHeaders(h http.Header) { im.headers.apply(h) }

// requestPhase follows the picker's answers to a request's headers and
// body. With a full-duplex streamed body the answers come in any order
// the picker likes: the headers answer may follow the body answers (a
// picker decides once it has read the body). The phase is complete with
// an immediate response, or once the headers are answered and the body
// is: by a streamed body ending in end_of_stream, a whole or cleared body,
// or, where the picker leaves the body alone, one empty answer per body
// message sent. Anything else the picker sends is a protocol error.
type requestPhase struct {
	// chunks is how many body messages were sent (0: the headers ended
	// the request).
	chunks  int
	maxBody int

	headersDone, bodyDone bool
	acks                  int
	streaming             bool
	// body replaces the request body when replaced is set.
	body     []byte
	replaced bool

	muts mutations
	// lb collects the picker's dynamic metadata under LBNamespace.
	lb        *structpb.Struct
	immediate *Immediate
}

func newRequestPhase(chunks, maxBody int) *requestPhase {
	return &requestPhase{chunks: chunks, maxBody: maxBody, bodyDone: chunks == 0}
}

// errProtocol marks answers the Endpoint Picker Protocol does not allow.
var errProtocol = errors.New("protocol error")

func protocolErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errProtocol}, args...)...)
}

// handle takes one answer and reports whether the phase is complete.
func (s *requestPhase) handle(r *extprocv3.ProcessingResponse) (bool, error) {
	if err := s.metadata(r.GetDynamicMetadata()); err != nil {
		return false, err
	}
	switch resp := r.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		if s.headersDone {
			return false, protocolErr("a second answer to the request headers")
		}
		s.headersDone = true
		c := resp.RequestHeaders.GetResponse()
		if err := s.muts.add(c.GetHeaderMutation()); err != nil {
			return false, protocolErr("request headers answer: %v", err)
		}
		if c.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
			// The answer carries the whole request: its body replaces
			// ours and no body answers are due (Envoy's semantics).
			if err := s.replaceBody(c.GetBodyMutation()); err != nil {
				return false, err
			}
			s.bodyDone = true
		}
	case *extprocv3.ProcessingResponse_RequestBody:
		if s.bodyDone {
			return false, protocolErr("a request body answer after the body was complete")
		}
		c := resp.RequestBody.GetResponse()
		if err := s.muts.add(c.GetHeaderMutation()); err != nil {
			return false, protocolErr("request body answer: %v", err)
		}
		if err := s.bodyAnswer(c.GetBodyMutation()); err != nil {
			return false, err
		}
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		im, err := immediateOf(resp.ImmediateResponse, s.maxBody)
		if err != nil {
			return false, err
		}
		s.immediate = im
		return true, nil
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return false, protocolErr("an answer to request trailers, which are not sent")
	case nil:
		return false, protocolErr("an answer without a response")
	default:
		return false, protocolErr("a %s answer while the request is processed", answerKind(r))
	}
	return s.headersDone && s.bodyDone, nil
}

// bodyAnswer takes one request body answer's mutation.
func (s *requestPhase) bodyAnswer(bm *extprocv3.BodyMutation) error {
	if sr := bm.GetStreamedResponse(); sr != nil {
		if s.acks > 0 {
			return protocolErr("a streamed body after answers leaving the body unchanged")
		}
		if !s.streaming {
			s.streaming, s.body = true, nil
		}
		if len(s.body)+len(sr.GetBody()) > s.maxBody {
			return protocolErr("the body the picker streams back exceeds %d bytes", s.maxBody)
		}
		s.body = append(s.body, sr.GetBody()...)
		if sr.GetEndOfStream() || sr.GetEndOfStreamWithoutMessage() {
			s.replaced, s.bodyDone = true, true
		}
		return nil
	}
	if bm.GetMutation() != nil {
		if s.streaming {
			return protocolErr("a whole body after a streamed one")
		}
		if err := s.replaceBody(bm); err != nil {
			return err
		}
		s.bodyDone = true
		return nil
	}
	// No mutation: this body message goes on as sent.
	if s.streaming {
		return protocolErr("an unchanged-body answer within a streamed body")
	}
	s.acks++
	if s.acks > s.chunks {
		return protocolErr("more body answers (%d) than body messages sent (%d)", s.acks, s.chunks)
	}
	s.bodyDone = s.acks == s.chunks
	return nil
}

// replaceBody applies a whole-body mutation (nil: none).
func (s *requestPhase) replaceBody(bm *extprocv3.BodyMutation) error {
	switch m := bm.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		if len(m.Body) > s.maxBody {
			return protocolErr("the replacement body exceeds %d bytes", s.maxBody)
		}
		s.body, s.replaced = m.Body, true
	case *extprocv3.BodyMutation_ClearBody:
		if m.ClearBody {
			s.body, s.replaced = nil, true
		}
	case *extprocv3.BodyMutation_StreamedResponse:
		return protocolErr("a streamed body where a whole one is expected")
	}
	return nil
}

// metadata merges the picker's LBNamespace metadata (later answers win
// per key); other namespaces are not the proxy's business.
func (s *requestPhase) metadata(md *structpb.Struct) error {
	lb := md.GetFields()[LBNamespace]
	if lb == nil {
		return nil
	}
	sv := lb.GetStructValue()
	if sv == nil {
		return protocolErr("dynamic metadata %s is not a struct", LBNamespace)
	}
	if s.lb == nil {
		s.lb = &structpb.Struct{Fields: map[string]*structpb.Value{}}
	}
	for k, v := range sv.GetFields() {
		if k == DestinationKey || k == FallbackKey {
			s.lb.Fields[k] = v
		}
	}
	return nil
}

// destinations is the picker's list of endpoints, as written.
func (s *requestPhase) destinations() []string {
	return destinationList(s.muts.value(destinationHeader), s.lb)
}

// immediateOf validates an ImmediateResponse. A missing status means 200,
// as in Envoy.
func immediateOf(ir *extprocv3.ImmediateResponse, maxBody int) (*Immediate, error) {
	im := &Immediate{Status: http.StatusOK, Details: trunc(ir.GetDetails())}
	if st := ir.GetStatus(); st != nil {
		im.Status = int(st.GetCode())
	}
	if im.Status < 200 || im.Status > 599 {
		return nil, protocolErr("immediate response with status %d", im.Status)
	}
	if len(ir.GetBody()) > maxBody {
		return nil, protocolErr("immediate response body exceeds %d bytes", maxBody)
	}
	im.Body = ir.GetBody()
	if err := im.headers.add(ir.GetHeaders()); err != nil {
		return nil, protocolErr("immediate response headers: %v", err)
	}
	return im, nil
}

// answerKind names an answer's type for messages.
func answerKind(r *extprocv3.ProcessingResponse) string {
	switch r.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingResponse_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingResponse_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return "response_trailers"
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return "immediate_response"
	case *extprocv3.ProcessingResponse_StreamedImmediateResponse:
		return "streamed_immediate_response"
	}
	return "unknown"
}
