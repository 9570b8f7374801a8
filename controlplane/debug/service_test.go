package debug_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/controlplane/debug"
	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/xds"
	debugv1 "github.com/infergate/infergate/proto/debug/v1"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/xdsclient"
)

const gw = "default/a"

func newSet(t *testing.T, routes ...string) *snapshot.Set {
	t.Helper()
	rs := []snapshotv1.Named{&snapshotv1.Listener{Name: gw + "/http", Gateway: gw, Port: 8080}}
	for _, r := range routes {
		rs = append(rs, &snapshotv1.Route{Name: gw + "/default/" + r + "/0", Route: "default/" + r})
	}
	s, err := snapshot.NewSet(gw, rs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDebugService(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	x := xds.NewServer(logger)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	x.Register(g)
	debug.NewService(x).Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	dc := debugv1.NewDebugClient(conn)
	ctx := context.Background()

	good := newSet(t, "r1", "r2")
	x.Update(map[string]*snapshot.Set{gw: good})

	// A proxy that refuses any complete snapshot containing route "bad".
	proxy := xdsclient.New(xdsclient.Config{
		Addr: lis.Addr().String(), NodeID: "proxy-1", Gateway: gw, Pod: "default/proxy-1", Logger: logger,
		Handler: xdsclient.HandlerFunc(func(r xdsclient.Resources) error {
			if _, ok := r.Complete(); ok && r[snapshotv1.TypeRoute][gw+"/default/bad/0"].Message != nil {
				return errors.New("route bad: invalid")
			}
			return nil
		}),
	})
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- proxy.Run(pctx) }()
	t.Cleanup(func() { cancel(); <-done })

	listProxies := func() []*debugv1.Proxy {
		t.Helper()
		resp, err := dc.ListProxies(ctx, &debugv1.ListProxiesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetProxies()
	}
	waitFor := func(what string, cond func([]*debugv1.Proxy) bool) []*debugv1.Proxy {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ps := listProxies()
			if cond(ps) {
				return ps
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; proxies: %v", what, ps)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ps := waitFor("proxy in sync", func(ps []*debugv1.Proxy) bool { return len(ps) == 1 && !ps[0].GetStale() })
	p := ps[0]
	if p.GetNodeId() != "proxy-1" || p.GetGateway() != gw || p.GetPod() != "default/proxy-1" || p.GetAddress() == "" ||
		p.GetConnectedAt() == nil || p.GetLastSync() == nil || len(p.GetTypes()) != len(snapshotv1.Types()) {
		t.Errorf("proxy = %v", p)
	}

	bad := newSet(t, "r1", "r2", "bad")
	x.Update(map[string]*snapshot.Set{gw: bad})
	waitFor("NACK reason", func(ps []*debugv1.Proxy) bool {
		if len(ps) != 1 || !ps[0].GetStale() {
			return false
		}
		for _, ts := range ps[0].GetTypes() {
			if ts.GetNacked() == bad.Version && ts.GetNackReason() == "route bad: invalid" {
				return true
			}
		}
		return false
	})

	// GetSnapshot: everything, by short name, by full type URL.
	all, err := dc.GetSnapshot(ctx, &debugv1.GetSnapshotRequest{Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	if all.GetVersion() != bad.Version || len(all.GetResources()) != bad.Count()+1 {
		t.Errorf("snapshot: version %s, %d resources; want %s, %d", all.GetVersion(), len(all.GetResources()), bad.Version, bad.Count()+1)
	}
	for _, typ := range []string{"Route", "route", snapshotv1.TypeRoute} {
		resp, err := dc.GetSnapshot(ctx, &debugv1.GetSnapshotRequest{Gateway: gw, Type: typ})
		if err != nil {
			t.Fatalf("type %q: %v", typ, err)
		}
		if len(resp.GetResources()) != 3 {
			t.Errorf("type %q: %d resources, want 3", typ, len(resp.GetResources()))
		}
		for _, a := range resp.GetResources() {
			if a.GetTypeUrl() != snapshotv1.TypeRoute {
				t.Errorf("type %q: got %s", typ, a.GetTypeUrl())
			}
		}
	}
	if _, err := dc.GetSnapshot(ctx, &debugv1.GetSnapshotRequest{Gateway: "default/nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown gateway: %v, want NotFound", err)
	}
	if _, err := dc.GetSnapshot(ctx, &debugv1.GetSnapshotRequest{Gateway: gw, Type: "Cluster"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown type: %v, want InvalidArgument", err)
	}
	gws, err := dc.ListGateways(ctx, &debugv1.ListGatewaysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(gws.GetGateways()) != 1 || gws.GetGateways()[0].GetGateway() != gw || gws.GetGateways()[0].GetVersion() != bad.Version {
		t.Errorf("gateways = %v", gws.GetGateways())
	}

	// The next good snapshot is ACKed and the NACK disappears.
	fixed := newSet(t, "r1", "r3")
	x.Update(map[string]*snapshot.Set{gw: fixed})
	waitFor("fixed snapshot ACKed", func(ps []*debugv1.Proxy) bool {
		if len(ps) != 1 || ps[0].GetStale() {
			return false
		}
		for _, ts := range ps[0].GetTypes() {
			if ts.GetNackReason() != "" {
				return false
			}
		}
		return true
	})
}
