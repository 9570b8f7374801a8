package extproc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/extproc/extproctest"
	"github.com/infergate/infergate/proto/freeport"
)

// TestExchangeLWEPPOrder: the headers answer comes after the body, every
// body message is answered empty (the body goes on unchanged); the proxy
// sends the body without waiting, in several messages for a large body,
// with the subset hint and its protocol configuration; the response
// headers go back with the served endpoint and the picker's edits apply,
// pseudo-headers and framing fields excepted.
func TestExchangeLWEPPOrder(t *testing.T) {
	for _, size := range []int{0, 10, 3*bodyChunk + 5} {
		t.Run(fmt.Sprintf("body%d", size), func(t *testing.T) {
			f := extproctest.Start(t, false, always("10.0.0.2:8000"))
			_, p, eps := newTestPicker(t, f.Addr, false, 5*time.Second)
			body := bytes.Repeat([]byte("x"), size)
			if size == 0 {
				body = nil
			}
			x, err := p.Start(context.Background(), testRequest(body))
			if err != nil {
				t.Fatal(err)
			}
			if x.Immediate() != nil {
				t.Fatal("unexpected immediate response")
			}
			if d := x.Destinations(); len(d) != 1 || d[0] != eps[1] {
				t.Fatalf("destinations %v, want [%s]", d, eps[1].Address)
			}
			if _, replaced := x.Body(); replaced {
				t.Fatal("body replaced by empty answers")
			}
			h := http.Header{"Content-Type": {"application/json"}, "X-Remove-Me": {"1"}}
			if im := x.Response(200, h, "10.0.0.2:8000"); im != nil {
				t.Fatal("unexpected immediate response to the response headers")
			}
			if got := h.Get("X-Served-By"); got != "10.0.0.2:8000" {
				t.Fatalf("served header %q", got)
			}
			if h.Get("X-Remove-Me") != "" || h.Get("Content-Length") != "" {
				t.Fatalf("edits not applied as allowed: %v", h)
			}
			x.Close()
			if err := f.WaitEnd(t); !eofOrCanceled(err) {
				t.Fatalf("stream ended with %v", err)
			}

			msgs := f.Received(0)
			first := msgs[0]
			if first.GetRequestHeaders().GetEndOfStream() != (size == 0) {
				t.Fatal("end_of_stream on the headers must say whether a body follows")
			}
			pc := first.GetProtocolConfig()
			if pc.GetRequestBodyMode() != extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED || !pc.GetSendBodyWithoutWaitingForHeaderResponse() ||
				pc.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_NONE {
				t.Fatalf("protocol config %v", pc)
			}
			for k, want := range map[string]string{":method": "POST", ":path": "/v1/completions", ":authority": "gw.example.com", ":scheme": "http", "x-request-id": "abc"} {
				if got := extproctest.Header(first, k); len(got) != 1 || got[0] != want {
					t.Fatalf("header %s = %v, want %s", k, got, want)
				}
			}
			if got := extproctest.Header(first, "x-multi"); len(got) != 2 {
				t.Fatalf("multi-valued header sent as %v", got)
			}
			subset := first.GetMetadataContext().GetFilterMetadata()[SubsetNamespace].GetFields()[SubsetKey].GetListValue().GetValues()
			if len(subset) != len(eps) || subset[2].GetStringValue() != "[fd00::3]:8000" {
				t.Fatalf("subset hint %v", subset)
			}
			var got []byte
			n := 0
			for _, m := range msgs {
				if b := m.GetRequestBody(); b != nil {
					got = append(got, b.GetBody()...)
					n++
				}
			}
			if !bytes.Equal(got, body) || n != (size+bodyChunk-1)/bodyChunk {
				t.Fatalf("picker got %d body bytes in %d messages, want %d", len(got), n, size)
			}
			last := msgs[len(msgs)-1]
			if st := extproctest.Header(last, ":status"); len(st) != 1 || st[0] != "200" {
				t.Fatalf("response headers :status %q", st)
			}
		})
	}
}

// TestExchangeStreamedBodyMutation: the reference picker's order (headers
// answer, then the body streamed back in pieces) with a changed body, a
// fallback list in metadata only, and endpoints outside the pool refused.
func TestExchangeStreamedBodyMutation(t *testing.T) {
	f := extproctest.Start(t, false, func(s extproctest.Stream) error {
		for {
			m, err := s.Recv()
			if err != nil {
				return nil
			}
			if b := m.GetRequestBody(); b != nil && b.GetEndOfStream() {
				r := extproctest.HeadersAnswer("", "10.0.0.9:8000, [fd00::3]:8000 ,10.0.0.1:8000,bogus,10.0.0.1:8000")
				if err := s.Send(r); err != nil {
					return err
				}
				_ = s.Send(extproctest.StreamedBody([]byte(`{"model":"b`), false))
				_ = s.Send(extproctest.StreamedBody([]byte(`ig"}`), true))
			}
		}
	})
	_, p, eps := newTestPicker(t, f.Addr, false, 5*time.Second)
	x, err := p.Start(context.Background(), testRequest([]byte(`{"model":"small"}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if d := x.Destinations(); len(d) != 2 || d[0] != eps[2] || d[1] != eps[0] {
		t.Fatalf("destinations %v", d)
	}
	b, ok := x.Body()
	if !ok || string(b) != `{"model":"big"}` {
		t.Fatalf("body %q replaced=%v", b, ok)
	}
	// Retries go down the list, skipping tried endpoints.
	if ep, err := x.Pick(nil, eps[:2]); err != nil || ep != eps[0] {
		t.Fatalf("pick among untried = %v, %v", ep, err)
	}
	if _, err := x.Pick(nil, eps[1:2]); err == nil {
		t.Fatal("pick past the picker's list must fail")
	}
}

// TestExchangeFailures: each way a picker fails is classified and bounded
// in time.
func TestExchangeFailures(t *testing.T) {
	cases := []struct {
		name   string
		handle func(s extproctest.Stream) error
		reason string
	}{
		{"grpc error (lwepp without candidates)", func(s extproctest.Stream) error {
			_, _ = s.Recv()
			return status.Error(codes.Internal, "no endpoints available")
		}, ReasonStreamError},
		{"hangs", func(s extproctest.Stream) error {
			<-s.Context().Done()
			return nil
		}, ReasonTimeout},
		{"closes without answering", func(s extproctest.Stream) error { return nil }, ReasonStreamError},
		{"names nothing", func(s extproctest.Stream) error {
			_, _ = s.Recv()
			_, _ = s.Recv()
			_ = s.Send(extproctest.HeadersAnswer("", ""))
			_ = s.Send(extproctest.BodyAck())
			<-s.Context().Done()
			return nil
		}, ReasonNoDestination},
		{"names only strangers", func(s extproctest.Stream) error {
			_, _ = s.Recv()
			_, _ = s.Recv()
			_ = s.Send(extproctest.HeadersAnswer("10.9.9.9:8000,not-an-address", ""))
			_ = s.Send(extproctest.BodyAck())
			<-s.Context().Done()
			return nil
		}, ReasonNotInPool},
		{"answers the response during the request", func(s extproctest.Stream) error {
			_, _ = s.Recv()
			_ = s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}})
			<-s.Context().Done()
			return nil
		}, ReasonProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := extproctest.Start(t, false, tc.handle)
			_, p, _ := newTestPicker(t, f.Addr, false, 300*time.Millisecond)
			start := time.Now()
			_, err := p.Start(context.Background(), testRequest([]byte("{}")))
			var e *Error
			if !errors.As(err, &e) || e.Reason != tc.reason || e.Picker != "ns/epp:9002" {
				t.Fatalf("err %v, want reason %s", err, tc.reason)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("failure took %s", d)
			}
		})
	}
}

// TestExchangeUnreachable: no listener, no endpoints, an invalid reference.
func TestExchangeUnreachable(t *testing.T) {
	// A port nothing listens on: freeport draws it from where no listener
	// on port 0 (another test's) can be given it meanwhile.
	port, err := freeport.On()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	_, p, _ := newTestPicker(t, addr, false, 2*time.Second)
	if _, err := p.Start(context.Background(), testRequest(nil)); !isReason(err, ReasonUnavailable) {
		t.Fatalf("closed port: %v", err)
	}
	_, p, _ = newTestPicker(t, "", false, 2*time.Second)
	if _, err := p.Start(context.Background(), testRequest(nil)); !isReason(err, ReasonNoEndpoints) {
		t.Fatalf("no endpoints: %v", err)
	}
	p.cfg.Invalid = "endpoint picker Service ns/epp not found"
	if _, err := p.Start(context.Background(), testRequest(nil)); !isReason(err, ReasonInvalidReference) {
		t.Fatalf("invalid: %v", err)
	}
}

func isReason(err error, reason string) bool {
	var e *Error
	return errors.As(err, &e) && e.Reason == reason
}

// TestExchangeCanceled: a client going away is not the picker's failure.
func TestExchangeCanceled(t *testing.T) {
	f := extproctest.Start(t, true, func(s extproctest.Stream) error { <-s.Context().Done(); return nil })
	_, p, _ := newTestPicker(t, f.Addr, true, 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := p.Start(ctx, testRequest([]byte("{}"))); !isReason(err, OutcomeCanceled) {
		t.Fatalf("canceled: %v", err)
	}
}

// TestExchangeImmediate: the picker sheds with 429 during the request,
// or replaces the response at its headers.
func TestExchangeImmediate(t *testing.T) {
	f := extproctest.Start(t, true, func(s extproctest.Stream) error {
		m, _ := s.Recv()
		if m.GetRequestHeaders() != nil {
			return s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests}, Details: "shed",
			}}})
		}
		return nil
	})
	_, p, _ := newTestPicker(t, f.Addr, true, 5*time.Second)
	x, err := p.Start(context.Background(), testRequest([]byte("{}")))
	if err != nil {
		t.Fatal(err)
	}
	im := x.Immediate()
	if im == nil || im.Status != 429 || im.Details != "shed" {
		t.Fatalf("immediate %+v", im)
	}
	x.Close()

	g := extproctest.Start(t, true, func(s extproctest.Stream) error {
		for {
			m, err := s.Recv()
			if err != nil {
				return nil
			}
			switch {
			case m.GetRequestHeaders() != nil:
				_ = s.Send(extproctest.HeadersAnswer("10.0.0.1:8000", ""))
			case m.GetResponseHeaders() != nil:
				_ = s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: []byte("no"),
				}}})
			}
		}
	})
	_, p, _ = newTestPicker(t, g.Addr, true, 5*time.Second)
	x, err = p.Start(context.Background(), testRequest(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	im = x.Response(200, http.Header{}, "10.0.0.1:8000")
	if im == nil || im.Status != 403 || string(im.Body) != "no" {
		t.Fatalf("response-stage immediate %+v", im)
	}
}

// TestExchangeResponseFailureKeepsResponse: a picker failing at the
// response headers leaves them as they are.
func TestExchangeResponseFailureKeepsResponse(t *testing.T) {
	f := extproctest.Start(t, true, func(s extproctest.Stream) error {
		_, _ = s.Recv()
		_ = s.Send(extproctest.HeadersAnswer("10.0.0.1:8000", ""))
		_, _ = s.Recv() // response headers
		return status.Error(codes.Internal, "boom")
	})
	_, p, _ := newTestPicker(t, f.Addr, true, 5*time.Second)
	x, err := p.Start(context.Background(), testRequest(nil))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"A": {"b"}}
	if im := x.Response(200, h, "10.0.0.1:8000"); im != nil || h.Get("A") != "b" {
		t.Fatalf("response changed on failure: %v %v", im, h)
	}
	x.Close()
}

// TestExchangeVerifiedTLS: with a TLS config the picker's certificate is
// checked: a self-signed one not in the roots fails.
func TestExchangeVerifiedTLS(t *testing.T) {
	f := extproctest.Start(t, false, always("10.0.0.1:8000"))
	c, p, _ := newTestPicker(t, f.Addr, false, 2*time.Second)
	_ = c
	cfg := *p.cfg
	cfg.Key += "verified"
	cfg.TLS = verifiedTLS(t)
	opts := c.opts
	opts.Registerer = nil
	c2 := NewClient(c.logger, opts)
	t.Cleanup(c2.Close)
	p2 := c2.Picker(backendWith(&cfg), pool(t))
	if _, err := p2.Start(context.Background(), testRequest(nil)); !isReason(err, ReasonUnavailable) {
		t.Fatalf("unverifiable certificate accepted: %v", err)
	}
}

// TestClientSharesConnections: pickers with the same settings share one
// connection, whose addresses follow the config; Retain retires the rest.
func TestClientSharesConnections(t *testing.T) {
	f := extproctest.Start(t, true, always("10.0.0.1:8000"))
	g := extproctest.Start(t, true, always("10.0.0.2:8000"))
	c, p, _ := newTestPicker(t, f.Addr, true, 2*time.Second)
	cfg := *p.cfg
	cfg.Addresses = []string{g.Addr}
	p2 := c.Picker(backendWith(&cfg), pool(t))
	if p2.conn != p.conn {
		t.Fatal("same settings, two connections")
	}
	// The connection now goes to g only.
	deadline := time.Now().Add(5 * time.Second)
	for {
		x, err := p2.Start(context.Background(), testRequest(nil))
		if err != nil {
			t.Fatal(err)
		}
		x.Close()
		if x.Destinations()[0].Address == "10.0.0.2:8000" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection did not follow the new addresses")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.retain([]*Picker{}, 0)
	if len(c.conns) != 0 {
		t.Fatal("unused connection kept")
	}
}

// verifiedTLS verifies against an empty set of roots.
func verifiedTLS(t *testing.T) *config.BackendTLS {
	t.Helper()
	return &config.BackendTLS{ServerName: "epp.ns.svc", Config: &tls.Config{ServerName: "epp.ns.svc", RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}}
}
