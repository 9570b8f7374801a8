// Package extproctest runs ext_proc endpoint pickers in tests: a gRPC
// server on loopback whose behaviour a test writes, recording what it was
// sent, and answer builders. The protocol's names are spelled out here
// rather than taken from package extproc, so a test catches a wrong one.
package extproctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
)

// Stream is the picker's side of one request's stream.
type Stream = grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]

// Picker is an ext_proc server on loopback. It records every message it
// reads: for tests, not for long runs.
type Picker struct {
	extprocv3.UnimplementedExternalProcessorServer
	// Addr is "127.0.0.1:port".
	Addr string
	srv  *grpc.Server

	mu       sync.Mutex
	record   bool
	handle   func(Stream) error
	received [][]*extprocv3.ProcessingRequest
	ended    chan error
}

// Start serves handle over TLS with a self-signed certificate (what
// pickers serve by default) or, with plaintext, without TLS, until the
// test ends.
func Start(t testing.TB, plaintext bool, handle func(Stream) error) *Picker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, err := serve(ln, plaintext, handle, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.srv.Stop)
	return p
}

// Serve serves handle on ln (TLS with a self-signed certificate unless
// plaintext) until Stop: a picker outside tests (benchmarks), which
// records nothing.
func Serve(ln net.Listener, plaintext bool, handle func(Stream) error) (*Picker, error) {
	return serve(ln, plaintext, handle, false)
}

func serve(ln net.Listener, plaintext bool, handle func(Stream) error, record bool) (*Picker, error) {
	var opts []grpc.ServerOption
	if !plaintext {
		cert, err := SelfSignedCert()
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	}
	p := &Picker{Addr: ln.Addr().String(), srv: grpc.NewServer(opts...), handle: handle, record: record, ended: make(chan error, 1000)}
	extprocv3.RegisterExternalProcessorServer(p.srv, p)
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Stop stops serving at once (a picker that went away).
func (p *Picker) Stop() { p.srv.Stop() }

// Process implements the service: the handler reads through a recorder.
func (p *Picker) Process(s Stream) error {
	if !p.record {
		return p.handle(s)
	}
	p.mu.Lock()
	i := len(p.received)
	p.received = append(p.received, nil)
	h := p.handle
	p.mu.Unlock()
	return h(&recording{Stream: s, p: p, i: i})
}

type recording struct {
	Stream
	p *Picker
	i int
}

func (r *recording) Recv() (*extprocv3.ProcessingRequest, error) {
	m, err := r.Stream.Recv()
	if err != nil {
		select {
		case r.p.ended <- err:
		default:
		}
		return nil, err
	}
	r.p.mu.Lock()
	r.p.received[r.i] = append(r.p.received[r.i], m)
	r.p.mu.Unlock()
	return m, nil
}

// Received returns the messages of stream i so far.
func (p *Picker) Received(i int) []*extprocv3.ProcessingRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.received[i]
}

// Streams is the number of streams opened so far.
func (p *Picker) Streams() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.received)
}

// WaitEnd waits for a stream to end on the picker's side and returns how
// (Recv's error).
func (p *Picker) WaitEnd(t testing.TB) error {
	t.Helper()
	select {
	case err := <-p.ended:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the picker's stream did not end")
		return nil
	}
}

// HeadersAnswer answers the request headers naming dest in the header
// x-gateway-destination-endpoint and md in dynamic metadata envoy.lb (each
// when not empty), setting extra headers too.
func HeadersAnswer(dest, md string, extra ...*corev3.HeaderValueOption) *extprocv3.ProcessingResponse {
	var set []*corev3.HeaderValueOption
	if dest != "" {
		set = append(set, SetHeader("x-gateway-destination-endpoint", dest))
	}
	set = append(set, extra...)
	r := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
		Response: &extprocv3.CommonResponse{ClearRouteCache: true, HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: set}},
	}}}
	if md != "" {
		r.DynamicMetadata = LBMetadata("x-gateway-destination-endpoint", structpb.NewStringValue(md))
	}
	return r
}

// SetHeader is a header mutation entry setting k to v.
func SetHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
}

// LBMetadata is dynamic metadata {envoy.lb: {key: v}}.
func LBMetadata(key string, v *structpb.Value) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"envoy.lb": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{key: v}}),
	}}
}

// BodyAck answers a body message leaving it unchanged.
func BodyAck() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}}
}

// StreamedBody answers with a piece of a (changed) streamed body.
func StreamedBody(b []byte, eos bool) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
		BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: b, EndOfStream: eos}}},
	}}}}
}

// Served is the endpoint the gateway reports as having served, from the
// metadata of a response headers message.
func Served(m *extprocv3.ProcessingRequest) string {
	return m.GetMetadataContext().GetFilterMetadata()["envoy.lb"].GetFields()["x-gateway-destination-endpoint-served"].GetStringValue()
}

// Header returns the values of header key in a headers message.
func Header(m *extprocv3.ProcessingRequest, key string) []string {
	hm := m.GetRequestHeaders()
	if hm == nil {
		hm = m.GetResponseHeaders()
	}
	var out []string
	for _, h := range hm.GetHeaders().GetHeaders() {
		if h.GetKey() == key {
			out = append(out, string(h.GetRawValue()))
		}
	}
	return out
}

// LWEPPLike answers as the conformance suite's picker does: every body
// message gets an empty answer, and after the last one (or headers ending
// the request) the headers answer comes first, naming pick(headers
// message); the response headers get x-served-by set to the served
// endpoint, plus a pseudo-header and Content-Length the gateway must
// ignore.
func LWEPPLike(pick func(headers *extprocv3.ProcessingRequest) string) func(Stream) error {
	return func(s Stream) error {
		var headers *extprocv3.ProcessingRequest
		for {
			m, err := s.Recv()
			if err != nil {
				return nil
			}
			switch v := m.GetRequest().(type) {
			case *extprocv3.ProcessingRequest_RequestHeaders:
				headers = m
				if v.RequestHeaders.GetEndOfStream() {
					d := pick(headers)
					if err := s.Send(HeadersAnswer(d, d)); err != nil {
						return err
					}
				}
			case *extprocv3.ProcessingRequest_RequestBody:
				if v.RequestBody.GetEndOfStream() {
					d := pick(headers)
					if err := s.Send(HeadersAnswer(d, d)); err != nil {
						return err
					}
				}
				if err := s.Send(BodyAck()); err != nil {
					return err
				}
			case *extprocv3.ProcessingRequest_ResponseHeaders:
				if err := s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{
					Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
						SetHeader("x-served-by", Served(m)), SetHeader(":status", "500"), SetHeader("content-length", "1"),
					}, RemoveHeaders: []string{"x-remove-me"}}},
				}}}); err != nil {
					return err
				}
			}
		}
	}
}

// SelfSigned makes a certificate for 127.0.0.1 no one trusts.
func SelfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := SelfSignedCert()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// SelfSignedCert is SelfSigned outside a test.
func SelfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "epp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
