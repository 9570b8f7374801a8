package xds_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/xds"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/xdsclient"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve runs srv on addr ("127.0.0.1:0" for a fresh port) until the test
// ends or stop is called; it returns the bound address.
func serve(t testing.TB, srv *xds.Server, addr string) (string, func()) {
	t.Helper()
	var lis net.Listener
	var err error
	// Re-binding a just-released port can race with the kernel; retry.
	for i := 0; i < 50; i++ {
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	g := grpc.NewServer(xds.GRPCServerOptions()...)
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	var once sync.Once
	stop := func() { once.Do(g.Stop) }
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

// recorder is a Handler that keeps every state it is given and can be told
// to reject states.
type recorder struct {
	mu     sync.Mutex
	calls  int
	last   xdsclient.Resources
	reject func(xdsclient.Resources) error
}

func (r *recorder) Update(res xdsclient.Resources) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.last = res
	if r.reject != nil {
		return r.reject(res)
	}
	return nil
}

func (r *recorder) state() xdsclient.Resources {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// completeAt reports whether the handler's last state is a complete snapshot
// of version v.
func (r *recorder) completeAt(v string) bool {
	m, ok := r.state().Complete()
	return ok && m.GetVersion() == v
}

func startClient(t testing.TB, addr, gateway, node string, h xdsclient.Handler) *xdsclient.Client {
	t.Helper()
	c, _ := startStoppableClient(t, addr, gateway, node, h)
	return c
}

// startStoppableClient is startClient with a function that ends the client
// (and its stream) before the test does; the test's cleanup stops it too.
func startStoppableClient(t testing.TB, addr, gateway, node string, h xdsclient.Handler) (*xdsclient.Client, func()) {
	t.Helper()
	c := xdsclient.New(xdsclient.Config{
		Addr: addr, NodeID: node, Gateway: gateway, Pod: "default/" + node,
		Handler: h, Logger: quietLogger(),
		KeepaliveTime: 10 * time.Second,
		BackoffMin:    20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("client %s: Run: %v", node, err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// world describes a gateway's resources compactly: route name → path, and
// endpoint addresses, so tests can change one thing at a time.
type world struct {
	routes    map[string]string
	endpoints []string
	listeners int
}

func (w world) set(t testing.TB, gw string) *snapshot.Set {
	t.Helper()
	var rs []snapshotv1.Named
	for i := 0; i < w.listeners; i++ {
		rs = append(rs, &snapshotv1.Listener{Name: fmt.Sprintf("%s/l%d", gw, i), Gateway: gw, Port: uint32(8080 + i), Protocol: snapshotv1.Listener_HTTP})
	}
	backend := gw + "/service/default/echo:80"
	for name, path := range w.routes {
		rs = append(rs, &snapshotv1.Route{
			Name:     gw + "/default/" + name + "/0",
			Route:    "default/" + name,
			Matches:  []*snapshotv1.RouteMatch{{Path: &snapshotv1.PathMatch{Type: snapshotv1.MatchType_PATH_PREFIX, Value: path}}},
			Backends: []*snapshotv1.BackendRef{{Backend: backend, Weight: 1}},
		})
	}
	rs = append(rs, &snapshotv1.Backend{Name: backend, Kind: snapshotv1.Backend_SERVICE, Source: "default/echo", Endpoints: backend})
	eps := &snapshotv1.Endpoints{Name: backend}
	for _, a := range w.endpoints {
		eps.Endpoints = append(eps.Endpoints, &snapshotv1.Endpoint{Address: a, Port: 8000})
	}
	rs = append(rs, eps)
	s, err := snapshot.NewSet(gw, rs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var errBadRoute = errors.New("route default/bad: path must start with /")
