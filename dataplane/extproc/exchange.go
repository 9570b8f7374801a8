package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

// bodyChunk is the largest body message sent: bodies the proxy buffered
// go out in few messages (most in one), each well under gRPC's default
// 4 MiB limit on the picker's side.
const bodyChunk = 256 << 10

// Picker is one pool's external endpoint picker in one config.
type Picker struct {
	client  *Client
	cfg     *config.EndpointPicker
	pool    string
	conn    *conn // nil when the reference is invalid or has no endpoints
	connErr error // why conn could not be made
	timeout time.Duration
	// byAddr resolves the endpoints the picker names; only these are
	// ever used.
	byAddr map[string]*endpoints.Endpoint
	// metadata carries the subset hint: the pool's endpoints.
	metadata *corev3.Metadata
	m        *pickerMetrics
	log      *logLimiter
}

// Name is the picker Service, "<ns>/<name>:<port>".
func (p *Picker) Name() string { return p.cfg.Service }

// Outcome counts what became of a request the picker was asked about
// (one of the Outcome constants).
func (p *Picker) Outcome(o string) { p.m.outcome(o) }

// FailOpen reports whether a failed picker's requests are picked locally.
func (p *Picker) FailOpen() bool { return p.cfg.FailOpen }

// Request is what a picker is shown of a request.
type Request struct {
	Method, Path, Authority, Scheme string
	// Header is the request header as it would be forwarded.
	Header http.Header
	// Body is the buffered body; nil when the request has none or the
	// proxy forwards it unbuffered (the headers then end the stream).
	Body []byte
}

// Error is a picker failure, its reason one of the Reason constants.
type Error struct {
	Picker, Phase, Reason string
	Err                   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("endpoint picker %s (%s, %s): %v", e.Picker, e.Phase, e.Reason, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Causes of a stream's cancellation.
var (
	errTimeout = errors.New("no answer in time")
	errClosed  = errors.New("exchange closed")
)

// Exchange is one request's stream to the picker.
type Exchange struct {
	p      *Picker
	stream grpc.BidiStreamingClient[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]
	ctx    context.Context
	cancel context.CancelCauseFunc
	// sent is closed once every request message is sent (nil: sent
	// before Start returned); sendErr holds a failure.
	sent    chan struct{}
	sendErr error

	phase *requestPhase
	dests []*endpoints.Endpoint
	done  bool
}

// Start asks the picker where req goes. On success the Exchange holds the
// picker's decision: an immediate response, or the endpoints to try in
// order with the header and body changes to make; Close it when the
// response has ended (or was never sent). A failure is an *Error, counted
// and its stream already closed; the caller applies the failure mode.
func (p *Picker) Start(ctx context.Context, req *Request) (*Exchange, error) {
	start := time.Now()
	switch {
	case p.cfg.Invalid != "":
		return nil, p.fail("request", ReasonInvalidReference, errors.New(p.cfg.Invalid))
	case p.connErr != nil:
		return nil, p.fail("request", ReasonUnavailable, p.connErr)
	case p.conn == nil:
		return nil, p.fail("request", ReasonNoEndpoints, errors.New("the picker Service has no ready endpoint"))
	}
	sctx, cancel := context.WithCancelCause(ctx)
	x := &Exchange{p: p, ctx: sctx, cancel: cancel}
	stream, err := extprocv3.NewExternalProcessorClient(p.conn.cc).Process(sctx)
	if err != nil {
		cancel(err)
		return nil, p.fail("request", x.reason(err), err)
	}
	x.stream = stream
	chunks := (len(req.Body) + bodyChunk - 1) / bodyChunk
	x.phase = newRequestPhase(chunks, p.client.opts.MaxBodyBytes)
	timer := time.AfterFunc(p.timeout, func() { cancel(errTimeout) })
	defer timer.Stop()
	if err := x.sendRequest(req, chunks); err != nil {
		x.Close()
		return nil, p.fail("request", x.reason(err), err)
	}
	for {
		resp, err := stream.Recv()
		if err == nil {
			var done bool
			if done, err = x.phase.handle(resp); err == nil && !done {
				continue
			}
		}
		if err != nil {
			x.Close()
			return nil, p.fail("request", x.reason(err), err)
		}
		break
	}
	p.m.duration.Observe(time.Since(start).Seconds())
	if x.phase.immediate != nil {
		return x, nil
	}
	if err := x.resolve(); err != nil {
		x.Close()
		return nil, err
	}
	return x, nil
}

// sendRequest sends the headers (with the subset hint and the protocol
// configuration) and the body. Body messages follow the headers at once
// (full duplex); when there are several, a goroutine sends them so the
// picker's answers are read meanwhile whatever order it sends them in.
func (x *Exchange) sendRequest(req *Request, chunks int) error {
	hdr := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers:     requestHeaderMap(req),
			EndOfStream: chunks == 0,
		}},
		MetadataContext: x.p.metadata,
		ProtocolConfig: &extprocv3.ProtocolConfiguration{
			RequestBodyMode:                         extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
			ResponseBodyMode:                        extprocfilterv3.ProcessingMode_NONE,
			SendBodyWithoutWaitingForHeaderResponse: true,
		},
	}
	if err := x.stream.Send(hdr); err != nil {
		return sendResult(err)
	}
	sendBody := func() error {
		for i := range chunks {
			lo, hi := i*bodyChunk, min((i+1)*bodyChunk, len(req.Body))
			msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
				Body: req.Body[lo:hi], EndOfStream: i == chunks-1,
			}}}
			if err := x.stream.Send(msg); err != nil {
				return sendResult(err)
			}
		}
		return nil
	}
	if chunks <= 1 {
		return sendBody()
	}
	x.sent = make(chan struct{})
	go func() {
		defer close(x.sent)
		if err := sendBody(); err != nil {
			x.sendErr = err
			x.cancel(err)
		}
	}()
	return nil
}

// sendResult is what a Send error means: io.EOF says the stream ended on
// the picker's side — it may have answered before reading everything (an
// immediate response), so its answers are read and Recv reports why it
// ended; anything else ends the exchange.
func sendResult(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// requestHeaderMap is the request's header map as Envoy sends it:
// pseudo-headers first, lower-case names, one entry per value.
func requestHeaderMap(req *Request) *corev3.HeaderMap {
	n := 4
	for _, vs := range req.Header {
		n += len(vs)
	}
	hs := make([]*corev3.HeaderValue, 0, n)
	hs = append(hs,
		&corev3.HeaderValue{Key: ":authority", RawValue: []byte(req.Authority)},
		&corev3.HeaderValue{Key: ":method", RawValue: []byte(req.Method)},
		&corev3.HeaderValue{Key: ":path", RawValue: []byte(req.Path)},
		&corev3.HeaderValue{Key: ":scheme", RawValue: []byte(req.Scheme)},
	)
	for k, vs := range req.Header {
		lk := strings.ToLower(k)
		for _, v := range vs {
			hs = append(hs, &corev3.HeaderValue{Key: lk, RawValue: []byte(v)})
		}
	}
	return &corev3.HeaderMap{Headers: hs}
}

// resolve turns the picker's list into pool endpoints, refusing entries
// that are malformed or not endpoints of the pool.
func (x *Exchange) resolve() error {
	list := x.phase.destinations()
	var refused []string
	x.dests, refused = resolveDestinations(list, x.p.byAddr)
	if len(refused) > 0 {
		x.p.m.refused.Add(float64(len(refused)))
	}
	switch {
	case len(x.dests) > 0:
		if len(refused) > 0 {
			x.p.logRefused(refused)
		}
		return nil
	case len(list) == 0:
		return x.p.fail("request", ReasonNoDestination, errors.New("the answer names no endpoint"))
	}
	return x.p.fail("request", ReasonNotInPool, fmt.Errorf("no endpoint named is one of pool %s's: %s", x.p.pool, trunc(strings.Join(refused, ","))))
}

// reason classifies a stream failure.
func (x *Exchange) reason(err error) string {
	switch cause := context.Cause(x.ctx); {
	case errors.Is(cause, errTimeout):
		return ReasonTimeout
	case errors.Is(err, errProtocol):
		return ReasonProtocolError
	case errors.Is(cause, context.DeadlineExceeded):
		// The request's own deadline passed while the picker thought.
		return ReasonTimeout
	case errors.Is(cause, context.Canceled):
		return OutcomeCanceled
	}
	if status.Code(err) == codes.Unavailable {
		return ReasonUnavailable
	}
	return ReasonStreamError
}

// fail counts and wraps a failure. A request whose client went away (or
// whose deadline passed) is no failure of the picker's.
func (p *Picker) fail(phase, reason string, err error) *Error {
	if reason != OutcomeCanceled {
		p.m.failed(phase, reason)
	}
	return &Error{Picker: p.cfg.Service, Phase: phase, Reason: reason, Err: err}
}

// Picker is the picker asked.
func (x *Exchange) Picker() *Picker { return x.p }

// Immediate is the picker's own response to the request, nil when the
// request is to be forwarded.
func (x *Exchange) Immediate() *Immediate { return x.phase.immediate }

// Destinations are the endpoints to try, in the picker's order.
func (x *Exchange) Destinations() []*endpoints.Endpoint { return x.dests }

// ApplyHeaders makes the picker's header changes to the request header h.
func (x *Exchange) ApplyHeaders(h http.Header) { x.phase.muts.apply(h) }

// Body returns the body the picker sent back, ok false when it left the
// body as it was.
func (x *Exchange) Body() (body []byte, ok bool) { return x.phase.body, x.phase.replaced }

// Pick implements picker.Picker: the first of the picker's endpoints
// among cands (the endpoints not tried yet). Past the end of the list
// there is none: a retry on this pool goes down the picker's list only.
func (x *Exchange) Pick(_ *picker.Request, cands []*endpoints.Endpoint) (*endpoints.Endpoint, error) {
	for _, d := range x.dests {
		for _, c := range cands {
			if c == d {
				return d, nil
			}
		}
	}
	return nil, picker.ErrNoEndpoint
}

// Response shows the picker the response headers with the endpoint that
// served (ep's address) and applies its changes to h, status excluded.
// It returns the picker's own response when it asks to replace this one.
// A picker failing here leaves the response as the model server sent it:
// the request has been served, and discarding that answer helps nobody;
// the failure is counted and logged.
func (x *Exchange) Response(code int, h http.Header, served string) *Immediate {
	if x.done {
		return nil
	}
	if x.sent != nil {
		<-x.sent
		if x.sendErr != nil {
			return nil
		}
	}
	hs := make([]*corev3.HeaderValue, 0, len(h)+1)
	hs = append(hs, &corev3.HeaderValue{Key: ":status", RawValue: []byte(strconv.Itoa(code))})
	for k, vs := range h {
		lk := strings.ToLower(k)
		for _, v := range vs {
			hs = append(hs, &corev3.HeaderValue{Key: lk, RawValue: []byte(v)})
		}
	}
	msg := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}}},
		MetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			LBNamespace: {Fields: map[string]*structpb.Value{ServedKey: structpb.NewStringValue(served)}},
		}},
	}
	timer := time.AfterFunc(x.p.timeout, func() { x.cancel(errTimeout) })
	defer timer.Stop()
	im, err := x.response(msg, h)
	if err != nil {
		e := x.p.fail("response", x.reason(err), err)
		if e.Reason != OutcomeCanceled {
			x.p.LogFailure(e, "the response is passed on unchanged")
		}
		x.Close()
		return nil
	}
	return im
}

func (x *Exchange) response(msg *extprocv3.ProcessingRequest, h http.Header) (*Immediate, error) {
	if err := sendResult(x.stream.Send(msg)); err != nil {
		return nil, err
	}
	resp, err := x.stream.Recv()
	if err != nil {
		return nil, err
	}
	switch r := resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		var m mutations
		if err := m.add(r.ResponseHeaders.GetResponse().GetHeaderMutation()); err != nil {
			return nil, protocolErr("response headers answer: %v", err)
		}
		m.apply(h)
		return nil, nil
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return immediateOf(r.ImmediateResponse, x.p.client.opts.MaxBodyBytes)
	case nil:
		return nil, protocolErr("an answer without a response")
	}
	return nil, protocolErr("a %s answer to the response headers", answerKind(resp))
}

// Close ends the stream: the picker sees the request finished. Safe to
// call more than once.
func (x *Exchange) Close() {
	if x.done {
		return
	}
	x.done = true
	if x.sent != nil {
		// The sender stops at its next message once the stream is cut.
		x.cancel(errClosed)
		<-x.sent
	} else {
		_ = x.stream.CloseSend()
	}
	x.cancel(errClosed)
}

// LogFailure logs a failure of the picker with what the proxy did about
// it, at most one line per picker every logEvery (with the number of lines
// held back): a picker that is down must not flood the log at the
// request rate; the metrics count every failure.
func (p *Picker) LogFailure(e *Error, consequence string) {
	ok, held := p.log.allow()
	if !ok {
		return
	}
	p.client.logger.Warn("endpoint picker failed", "picker", e.Picker, "pool", p.pool, "phase", e.Phase,
		"reason", e.Reason, "err", e.Err, "then", consequence, "similar_lines_held_back", held)
}

func (p *Picker) logRefused(refused []string) {
	if ok, held := p.log.allow(); ok {
		p.client.logger.Warn("endpoint picker named endpoints outside the pool; they are skipped", "picker", p.cfg.Service,
			"pool", p.pool, "refused", trunc(strings.Join(refused, ",")), "similar_lines_held_back", held)
	}
}

// logEvery is the least time between two log lines about one picker.
const logEvery = 10 * time.Second

// logLimiter lets one line through every logEvery.
type logLimiter struct {
	last       atomic.Int64 // unix nanos of the last line
	suppressed atomic.Int64
}

// allow reports whether to log now and how many lines were held back.
func (l *logLimiter) allow() (bool, int64) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(logEvery) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
