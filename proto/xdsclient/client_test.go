package xdsclient

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// scriptedADS is a hand-driven ADS server: the test reads the client's
// requests and writes responses, to exercise the client's protocol handling
// (decoding errors, removals) independently of go-control-plane.
type scriptedADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	streams chan discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
}

func (s *scriptedADS) DeltaAggregatedResources(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	s.streams <- st
	<-st.Context().Done()
	return nil
}

// scriptedStream is a client connected to a scriptedADS, its subscriptions
// read: the test sends responses and reads the ACK or NACK of each.
type scriptedStream struct {
	t  *testing.T
	c  *Client
	st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
}

// startScripted runs a client with handler h against a scriptedADS and
// reads its subscriptions.
func startScripted(t *testing.T, h Handler) *scriptedStream {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ads := &scriptedADS{streams: make(chan discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer, 1)}
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, ads)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)

	c := New(Config{Addr: lis.Addr().String(), NodeID: "n1", Gateway: "default/a", Pod: "default/p1", Handler: h})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	s := &scriptedStream{t: t, c: c}
	select {
	case s.st = <-ads.streams:
	case <-time.After(10 * time.Second):
		t.Fatal("client did not open a stream")
	}
	for i, typeURL := range snapshotv1.Types() {
		req := s.recv()
		if req.GetTypeUrl() != typeURL || len(req.GetResourceNamesSubscribe()) != 1 || req.GetResourceNamesSubscribe()[0] != "*" {
			t.Fatalf("subscription %d = %v", i, req)
		}
		if i == 0 {
			md := req.GetNode().GetMetadata().GetFields()
			if req.GetNode().GetId() != "n1" || md["gateway"].GetStringValue() != "default/a" || md["pod"].GetStringValue() != "default/p1" {
				t.Fatalf("node = %v", req.GetNode())
			}
		}
	}
	return s
}

func (s *scriptedStream) recv() *discoveryv3.DeltaDiscoveryRequest {
	s.t.Helper()
	req, err := s.st.Recv()
	if err != nil {
		s.t.Fatal(err)
	}
	return req
}

// send sends one response and returns the client's answer to it.
func (s *scriptedStream) send(typeURL, nonce string, removed []string, rs ...*discoveryv3.Resource) *discoveryv3.DeltaDiscoveryRequest {
	s.t.Helper()
	if err := s.st.Send(&discoveryv3.DeltaDiscoveryResponse{TypeUrl: typeURL, Nonce: nonce, SystemVersionInfo: "v" + nonce, Resources: rs, RemovedResources: removed}); err != nil {
		s.t.Fatal(err)
	}
	ack := s.recv()
	if ack.GetResponseNonce() != nonce || ack.GetTypeUrl() != typeURL {
		s.t.Fatalf("answer to %s = %v", nonce, ack)
	}
	return ack
}

// resource wraps m as the control plane sends it.
func resource(t *testing.T, m snapshotv1.Named) *discoveryv3.Resource {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &discoveryv3.Resource{Name: m.GetName(), Version: "h-" + m.GetName(), Resource: a}
}

func TestClientProtocol(t *testing.T) {
	updates := make(chan Resources, 10)
	s := startScripted(t, HandlerFunc(func(r Resources) error {
		updates <- r
		if _, ok := r[snapshotv1.TypeBackend]; ok {
			return errors.New("backends not supported")
		}
		return nil
	}))
	c, send := s.c, s.send
	resource := func(m snapshotv1.Named) *discoveryv3.Resource { return resource(t, m) }

	l := &snapshotv1.Listener{Name: "default/a/http", Port: 80}
	if ack := send(snapshotv1.TypeListener, "1", nil, resource(l)); ack.GetErrorDetail() != nil {
		t.Fatalf("good listener NACKed: %v", ack.GetErrorDetail())
	}
	if got := <-updates; !proto.Equal(got[snapshotv1.TypeListener][l.Name].Message, l) {
		t.Fatalf("state after listener = %v", got)
	}
	if !c.Connected() {
		t.Error("not connected after a response")
	}

	// Undecodable body: NACK, handler not called, state untouched.
	bad := &discoveryv3.Resource{Name: "default/a/r/0", Resource: &anypb.Any{TypeUrl: snapshotv1.TypeRoute, Value: []byte{0xff, 0xff}}}
	if ack := send(snapshotv1.TypeRoute, "2", nil, bad); ack.GetErrorDetail() == nil {
		t.Fatal("garbage route ACKed")
	}
	// Body of the wrong type.
	wrong := resource(&snapshotv1.Backend{Name: "default/a/r/0"})
	if ack := send(snapshotv1.TypeRoute, "3", nil, wrong); ack.GetErrorDetail() == nil {
		t.Fatal("backend body under Route type ACKed")
	}
	// Unknown type.
	if ack := send("type.googleapis.com/google.protobuf.Empty", "4", nil); ack.GetErrorDetail() == nil {
		t.Fatal("unknown type ACKed")
	}
	// Handler error: NACK with its text, the state is kept.
	be := &snapshotv1.Backend{Name: "default/a/b"}
	ack := send(snapshotv1.TypeBackend, "5", nil, resource(be))
	if ack.GetErrorDetail().GetMessage() != "backends not supported" {
		t.Fatalf("handler error NACK = %v", ack.GetErrorDetail())
	}
	<-updates
	if _, ok := c.Resources()[snapshotv1.TypeBackend][be.Name]; !ok {
		t.Error("state not kept after NACK")
	}
	// Removal: handler sees it; ACKed again, which clears the NACK.
	if ack := send(snapshotv1.TypeBackend, "6", []string{be.Name}); ack.GetErrorDetail() != nil {
		t.Fatalf("removal NACKed: %v", ack.GetErrorDetail())
	}
	got := <-updates
	if len(got[snapshotv1.TypeBackend]) != 0 || len(got[snapshotv1.TypeListener]) != 1 {
		t.Fatalf("state after removal = %v", got)
	}
	for _, s := range c.Status() {
		if s.Nacked != "" {
			t.Errorf("NACK not cleared after a later ACK: %+v", s)
		}
		if s.TypeURL == snapshotv1.TypeBackend && s.Acked != "v6" {
			t.Errorf("backend status = %+v", s)
		}
		if s.LastResponse.IsZero() != (s.ReceivedBytes == 0) {
			t.Errorf("%s: bytes counted wrongly: %+v", s.TypeURL, s)
		}
	}
	select {
	case u := <-updates:
		t.Errorf("unexpected handler call: %v", u)
	default:
	}
}

// reversed encodes m with its top-level fields in reverse order: valid
// protobuf that decodes to the same message (m has no repeated fields
// whose order reversal would change), but other bytes than Go's
// deterministic encoding — what a control plane built with another
// protobuf library or version may send.
func reversed(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var fields [][]byte
	for len(b) > 0 {
		_, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(0, typ, b[n:])
		if m < 0 {
			t.Fatal(protowire.ParseError(m))
		}
		fields = append(fields, b[:n+m])
		b = b[n+m:]
	}
	var out []byte
	for i := len(fields) - 1; i >= 0; i-- {
		out = append(out, fields[i]...)
	}
	return out
}

// TestManifestHashesReceivedBytes: the Manifest's hashes are checked
// against the bytes as received. The same resource set sent in two
// encodings (fields in another order), each with a Manifest hashing what
// was sent, is complete both times — re-encoding the decoded messages
// would have found the reordered one incomplete for ever.
func TestManifestHashesReceivedBytes(t *testing.T) {
	updates := make(chan Resources, 10)
	s := startScripted(t, HandlerFunc(func(r Resources) error { updates <- r; return nil }))
	route := &snapshotv1.Route{Name: "default/a/default/r/0", Route: "default/r", RuleIndex: 2, Listeners: []string{"default/a/http"}}
	canonical, err := proto.MarshalOptions{Deterministic: true}.Marshal(route)
	if err != nil {
		t.Fatal(err)
	}
	other := reversed(t, route)
	if bytes.Equal(other, canonical) || snapshotv1.HashBytes(other) == snapshotv1.Hash(route) {
		t.Fatal("the reordered encoding is the canonical one: the test would prove nothing")
	}
	nonce := 0
	for _, enc := range []struct {
		name string
		b    []byte
	}{{"reordered", other}, {"canonical", canonical}} {
		hash := snapshotv1.HashBytes(enc.b)
		nonce++
		if ack := s.send(snapshotv1.TypeRoute, strconv.Itoa(nonce), nil, &discoveryv3.Resource{Name: route.Name, Version: hash,
			Resource: &anypb.Any{TypeUrl: snapshotv1.TypeRoute, Value: enc.b}}); ack.GetErrorDetail() != nil {
			t.Fatalf("%s: route NACKed: %v", enc.name, ack.GetErrorDetail())
		}
		<-updates
		// Both manifest forms: the full list and the per-type digests.
		refs := []*snapshotv1.ResourceRef{{TypeUrl: snapshotv1.TypeRoute, Name: route.Name, Hash: hash}}
		var got Resources
		for _, mf := range []*snapshotv1.Manifest{
			{Name: "default/a", Version: enc.name + "/full", Resources: refs},
			{Name: "default/a", Version: enc.name + "/compact", Types: snapshotv1.TypeDigests(refs)},
		} {
			nonce++
			if ack := s.send(snapshotv1.TypeManifest, strconv.Itoa(nonce), nil, resource(t, mf)); ack.GetErrorDetail() != nil {
				t.Fatalf("%s: manifest NACKed: %v", mf.Version, ack.GetErrorDetail())
			}
			got = <-updates
			if m, err := got.Check(); err != nil || m.GetVersion() != mf.Version {
				t.Fatalf("%s: state not complete (manifest %v: %v)", mf.Version, m, err)
			}
		}
		if !proto.Equal(got[snapshotv1.TypeRoute][route.Name].Message, route) {
			t.Fatalf("%s encoding decoded to %v", enc.name, got[snapshotv1.TypeRoute][route.Name].Message)
		}
	}
}
