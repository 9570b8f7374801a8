package xdsclient

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
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

func TestClientProtocol(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ads := &scriptedADS{streams: make(chan discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer, 1)}
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, ads)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)

	updates := make(chan Resources, 10)
	c := New(Config{Addr: lis.Addr().String(), NodeID: "n1", Gateway: "default/a", Pod: "default/p1",
		Handler: HandlerFunc(func(r Resources) error {
			updates <- r
			if _, ok := r[snapshotv1.TypeBackend]; ok {
				return errors.New("backends not supported")
			}
			return nil
		})})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	var st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	select {
	case st = <-ads.streams:
	case <-time.After(10 * time.Second):
		t.Fatal("client did not open a stream")
	}
	recv := func() *discoveryv3.DeltaDiscoveryRequest {
		t.Helper()
		req, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	for i, typeURL := range snapshotv1.Types() {
		req := recv()
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
	send := func(typeURL, nonce string, removed []string, rs ...*discoveryv3.Resource) *discoveryv3.DeltaDiscoveryRequest {
		t.Helper()
		if err := st.Send(&discoveryv3.DeltaDiscoveryResponse{TypeUrl: typeURL, Nonce: nonce, SystemVersionInfo: "v" + nonce, Resources: rs, RemovedResources: removed}); err != nil {
			t.Fatal(err)
		}
		ack := recv()
		if ack.GetResponseNonce() != nonce || ack.GetTypeUrl() != typeURL {
			t.Fatalf("answer to %s = %v", nonce, ack)
		}
		return ack
	}
	resource := func(m snapshotv1.Named) *discoveryv3.Resource {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return &discoveryv3.Resource{Name: m.GetName(), Version: "h-" + m.GetName(), Resource: a}
	}

	l := &snapshotv1.Listener{Name: "default/a/http", Port: 80}
	if ack := send(snapshotv1.TypeListener, "1", nil, resource(l)); ack.GetErrorDetail() != nil {
		t.Fatalf("good listener NACKed: %v", ack.GetErrorDetail())
	}
	if got := <-updates; !proto.Equal(got[snapshotv1.TypeListener][l.Name], l) {
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
	}
	select {
	case u := <-updates:
		t.Errorf("unexpected handler call: %v", u)
	default:
	}
}
