package xds_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/xds"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/xdsclient"
)

const gwA, gwB = "default/a", "default/b"

func TestDeliverUpdateDeleteRemove(t *testing.T) {
	srv := xds.NewServer(quietLogger())
	addr, _ := serve(t, srv, "127.0.0.1:0")
	rec := &recorder{}
	// Connect before the first Update: the proxy must wait, not be told
	// everything is gone.
	c := startClient(t, addr, gwA, "proxy-1", rec)

	w := world{listeners: 2, routes: map[string]string{"r1": "/a", "r2": "/b", "r3": "/c"}, endpoints: []string{"10.0.0.1", "10.0.0.2"}}
	v1 := w.set(t, gwA)
	srv.Update(map[string]*snapshot.Set{gwA: v1})
	eventually(t, "first snapshot", func() bool { return rec.completeAt(v1.Version) })
	if got := len(rec.state()[snapshotv1.TypeRoute]); got != 3 {
		t.Fatalf("routes held = %d, want 3", got)
	}
	if !c.Connected() {
		t.Fatal("client not connected after receiving a snapshot")
	}
	// A wildcard subscription to a type with no resources (ModelRule) is
	// still answered once, with an empty response at the snapshot version.
	eventually(t, "empty type answered", func() bool {
		for _, st := range c.Status() {
			if st.TypeURL == snapshotv1.TypeModelRule {
				return st.Acked == v1.Version && st.Resources == 0
			}
		}
		return false
	})
	eventually(t, "proxy in sync", func() bool { ps := srv.Proxies(); return len(ps) == 1 && !ps[0].Stale })
	before := srv.Stats()
	if before.ResourcesSent != uint64(v1.Count()+1) {
		t.Errorf("initial resources sent = %d, want %d (all + manifest)", before.ResourcesSent, v1.Count()+1)
	}

	// Change one route: only that route and the manifest travel.
	w.routes["r2"] = "/b2"
	v2 := w.set(t, gwA)
	srv.Update(map[string]*snapshot.Set{gwA: v2})
	eventually(t, "updated snapshot", func() bool { return rec.completeAt(v2.Version) })
	eventually(t, "proxy in sync", func() bool { ps := srv.Proxies(); return len(ps) == 1 && !ps[0].Stale })
	after := srv.Stats()
	if sent := after.ResourcesSent - before.ResourcesSent; sent != 2 {
		t.Errorf("resources resent for one changed route = %d, want 2 (route + manifest)", sent)
	}
	route := rec.state()[snapshotv1.TypeRoute][gwA+"/default/r2/0"].Message.(*snapshotv1.Route)
	if route.GetMatches()[0].GetPath().GetValue() != "/b2" {
		t.Errorf("route r2 not updated: %v", route)
	}

	// Re-pushing an identical world sends nothing.
	pushes := srv.Stats().SnapshotUpdates
	srv.Update(map[string]*snapshot.Set{gwA: w.set(t, gwA)})
	if got := srv.Stats().SnapshotUpdates; got != pushes {
		t.Errorf("unchanged gateway re-pushed: updates %d → %d", pushes, got)
	}

	// Delete a route: the removal and the manifest travel.
	before = srv.Stats()
	delete(w.routes, "r3")
	v3 := w.set(t, gwA)
	srv.Update(map[string]*snapshot.Set{gwA: v3})
	eventually(t, "route deleted", func() bool { return rec.completeAt(v3.Version) })
	after = srv.Stats()
	if sent, removed := after.ResourcesSent-before.ResourcesSent, after.ResourcesRemoved-before.ResourcesRemoved; sent != 1 || removed != 1 {
		t.Errorf("after deleting a route: sent %d removed %d, want 1 (manifest) and 1", sent, removed)
	}
	if _, ok := rec.state()[snapshotv1.TypeRoute][gwA+"/default/r3/0"]; ok {
		t.Error("deleted route still held")
	}

	// Remove the gateway: every resource is deleted on the proxy.
	srv.Update(map[string]*snapshot.Set{})
	eventually(t, "gateway removed", func() bool { return rec.state().Empty() })
	if srv.Set(gwA) != nil {
		t.Error("removed gateway still has a set")
	}
	eventually(t, "proxy in sync with empty snapshot", func() bool { ps := srv.Proxies(); return len(ps) == 1 && !ps[0].Stale })
}

func TestGatewaysIsolated(t *testing.T) {
	srv := xds.NewServer(quietLogger())
	addr, _ := serve(t, srv, "127.0.0.1:0")
	a := world{listeners: 1, routes: map[string]string{"ra": "/"}, endpoints: []string{"10.0.0.1"}}.set(t, gwA)
	b := world{listeners: 1, routes: map[string]string{"rb1": "/", "rb2": "/x"}, endpoints: []string{"10.0.1.1"}}.set(t, gwB)
	srv.Update(map[string]*snapshot.Set{gwA: a, gwB: b})
	ra, rb := &recorder{}, &recorder{}
	startClient(t, addr, gwA, "pa", ra)
	startClient(t, addr, gwB, "pb", rb)
	eventually(t, "A synced", func() bool { return ra.completeAt(a.Version) })
	eventually(t, "B synced", func() bool { return rb.completeAt(b.Version) })
	for gw, rec := range map[string]*recorder{gwA: ra, gwB: rb} {
		for typeURL, byName := range rec.state() {
			for name := range byName {
				if !strings.HasPrefix(name, gw) {
					t.Errorf("proxy of %s holds %s %q", gw, typeURL, name)
				}
			}
		}
	}
	// Removing B does not touch A.
	srv.Update(map[string]*snapshot.Set{gwA: a})
	eventually(t, "B emptied", func() bool { return rb.state().Empty() })
	if !ra.completeAt(a.Version) {
		t.Error("A lost its snapshot when B was removed")
	}
	ps := srv.Proxies()
	if len(ps) != 2 || ps[0].Gateway != gwA || ps[1].Gateway != gwB || ps[0].Pod != "default/pa" {
		t.Errorf("proxies = %+v", ps)
	}
}

func TestNackKeepsReasonThenAcks(t *testing.T) {
	var mu sync.Mutex
	var nacks []string
	srv := xds.NewServer(quietLogger(), xds.WithOnNack(func(gw, node, typeURL, reason string) {
		mu.Lock()
		defer mu.Unlock()
		nacks = append(nacks, gw+"|"+node+"|"+typeURL+"|"+reason)
	}))
	addr, _ := serve(t, srv, "127.0.0.1:0")
	rec := &recorder{reject: func(r xdsclient.Resources) error {
		if _, complete := r.Complete(); !complete {
			return nil // judged once complete
		}
		if _, ok := r[snapshotv1.TypeRoute][gwA+"/default/bad/0"]; ok {
			return errBadRoute
		}
		return nil
	}}
	c := startClient(t, addr, gwA, "p1", rec)
	w := world{listeners: 1, routes: map[string]string{"good": "/"}, endpoints: []string{"10.0.0.1"}}
	good := w.set(t, gwA)
	srv.Update(map[string]*snapshot.Set{gwA: good})
	eventually(t, "synced", func() bool { ps := srv.Proxies(); return len(ps) == 1 && !ps[0].Stale })

	w.routes["bad"] = "nope"
	bad := w.set(t, gwA)
	srv.Update(map[string]*snapshot.Set{gwA: bad})
	eventually(t, "NACK tracked", func() bool {
		ps := srv.Proxies()
		if len(ps) != 1 || !ps[0].Stale {
			return false
		}
		for _, ts := range ps[0].Types {
			if ts.Nacked == bad.Version && ts.NackReason == errBadRoute.Error() {
				return true
			}
		}
		return false
	})
	mu.Lock()
	if len(nacks) != 1 || !strings.HasPrefix(nacks[0], gwA+"|p1|") || !strings.HasSuffix(nacks[0], "|"+errBadRoute.Error()) {
		t.Errorf("OnNack calls = %q", nacks)
	}
	mu.Unlock()
	if srv.Stats().Nacks == 0 {
		t.Error("Nacks counter not incremented")
	}
	var clientNacked bool
	for _, st := range c.Status() {
		clientNacked = clientNacked || (st.Nacked == bad.Version && st.NackReason == errBadRoute.Error())
	}
	if !clientNacked {
		t.Errorf("client status does not show the NACK: %+v", c.Status())
	}

	delete(w.routes, "bad")
	w.routes["better"] = "/v2"
	fixed := w.set(t, gwA)
	srv.Update(map[string]*snapshot.Set{gwA: fixed})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("versions good=%s bad=%s fixed=%s", good.Version, bad.Version, fixed.Version)
			t.Logf("server: %+v", srv.Proxies())
			t.Logf("client: %+v", c.Status())
		}
	})
	eventually(t, "fixed snapshot ACKed", func() bool {
		ps := srv.Proxies()
		if len(ps) != 1 || ps[0].Stale {
			return false
		}
		for _, ts := range ps[0].Types {
			if ts.Nacked != "" {
				return false
			}
			if ts.TypeURL == snapshotv1.TypeManifest && ts.Acked != fixed.Version {
				return false
			}
		}
		return true
	})
	// The server counts a proxy in sync once it ACKs the fixed Manifest with
	// nothing outstanding; go-control-plane may queue the fixed Route (its
	// watch reopened by the NACK) behind that ACK, so the handler can see
	// the complete fixed state a moment later.
	eventually(t, "handler got the fixed snapshot", func() bool { return rec.completeAt(fixed.Version) })
}

func TestRestartResumesWithKnownVersions(t *testing.T) {
	w := world{listeners: 2, routes: map[string]string{"r1": "/a", "r2": "/b"}, endpoints: []string{"10.0.0.1"}}
	v1 := w.set(t, gwA)
	srv1 := xds.NewServer(quietLogger())
	srv1.Update(map[string]*snapshot.Set{gwA: v1})
	addr, stop := serve(t, srv1, "127.0.0.1:0")
	rec := &recorder{}
	c := startClient(t, addr, gwA, "p1", rec)
	eventually(t, "synced to first server", func() bool { return rec.completeAt(v1.Version) })

	stop()
	eventually(t, "disconnected", func() bool { return !c.Connected() })
	if !rec.completeAt(v1.Version) {
		t.Fatal("client lost its state when the control plane went away")
	}

	// A new control plane with one endpoint changed while we were away.
	w.endpoints = []string{"10.0.0.1", "10.0.0.9"}
	v2 := w.set(t, gwA)
	synced := make(chan struct{}, 1)
	srv2 := xds.NewServer(quietLogger(), xds.WithOnSynced(func(gw, node, version string, _ time.Duration) {
		if version == v2.Version {
			select {
			case synced <- struct{}{}:
			default:
			}
		}
	}))
	srv2.Update(map[string]*snapshot.Set{gwA: v2})
	serve(t, srv2, addr)
	eventually(t, "resynced", func() bool { return rec.completeAt(v2.Version) })
	<-synced
	st := srv2.Stats()
	if st.ResourcesSent != 2 || st.ResourcesRemoved != 0 {
		t.Errorf("resume sent %d resources and removed %d, want 2 (endpoints + manifest) and 0", st.ResourcesSent, st.ResourcesRemoved)
	}
	if !c.Connected() {
		t.Error("not connected after resync")
	}
}

func TestAuthorizerAndMissingGateway(t *testing.T) {
	srv := xds.NewServer(quietLogger(), xds.WithAuthorizer(func(_ context.Context, node *corev3.Node) error {
		if node.GetMetadata().GetFields()[xds.MetadataGateway].GetStringValue() != gwA {
			return status.Error(codes.PermissionDenied, "not your gateway")
		}
		return nil
	}))
	addr, _ := serve(t, srv, "127.0.0.1:0")
	a := world{listeners: 1, routes: map[string]string{"r": "/"}}.set(t, gwA)
	b := world{listeners: 1, routes: map[string]string{"r": "/"}}.set(t, gwB)
	srv.Update(map[string]*snapshot.Set{gwA: a, gwB: b})
	ra, rb := &recorder{}, &recorder{}
	startClient(t, addr, gwA, "pa", ra)
	cb := startClient(t, addr, gwB, "pb", rb)
	eventually(t, "A synced", func() bool { return ra.completeAt(a.Version) })
	time.Sleep(100 * time.Millisecond) // several refused attempts
	if cb.Connected() || rb.state() != nil {
		t.Errorf("refused proxy got state: connected=%v state=%v", cb.Connected(), rb.state())
	}
	if ps := srv.Proxies(); len(ps) != 1 || ps[0].Gateway != gwA {
		t.Errorf("proxies = %+v", ps)
	}

	// A proxy for a gateway the control plane does not know is answered
	// with nothing (not left waiting) once the world is known.
	srv2 := xds.NewServer(quietLogger())
	addr2, _ := serve(t, srv2, "127.0.0.1:0")
	srv2.Update(map[string]*snapshot.Set{gwA: a})
	ru := &recorder{}
	cu := startClient(t, addr2, "default/unknown", "pu", ru)
	eventually(t, "unknown gateway answered", func() bool {
		ps := srv2.Proxies()
		return cu.Connected() && len(ps) == 1 && !ps[0].Stale
	})
	if !ru.state().Empty() {
		t.Errorf("unknown gateway got resources: %v", ru.state())
	}
}

// AuthorizeGateway runs the xDS authoriser for another service's stream
// (the fleet keys): the hook sees the gateway as an xDS node would carry
// it, and without a hook every gateway is admitted.
func TestAuthorizeGateway(t *testing.T) {
	srv := xds.NewServer(quietLogger(), xds.WithAuthorizer(func(_ context.Context, node *corev3.Node) error {
		if node.GetMetadata().GetFields()[xds.MetadataGateway].GetStringValue() != gwA {
			return status.Error(codes.PermissionDenied, "not your gateway")
		}
		return nil
	}))
	ctx := context.Background()
	if err := srv.AuthorizeGateway(ctx, gwA); err != nil {
		t.Errorf("%s refused: %v", gwA, err)
	}
	if err := srv.AuthorizeGateway(ctx, gwB); status.Code(err) != codes.PermissionDenied {
		t.Errorf("%s: %v, want PermissionDenied", gwB, err)
	}
	if err := xds.NewServer(quietLogger()).AuthorizeGateway(ctx, gwB); err != nil {
		t.Errorf("without an authoriser: %v", err)
	}
}
