package xds_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/xds"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/xdsclient"
)

// manifest is the Manifest the handler last held (nil without one).
func (r *recorder) manifest() *snapshotv1.Manifest {
	m, _ := r.state().Complete()
	return m
}

// TestProxyCountFollowsStreams: a gateway's Manifest carries how many
// proxies serve it. Streams join (1 → 3) and leave (3 → 2), Ready proxy
// pods raise the count; every change re-sends only the Manifest, at the
// same snapshot version, coalesced into one push per burst.
func TestProxyCountFollowsStreams(t *testing.T) {
	var synced atomic.Int64
	srv := xds.NewServer(quietLogger(), xds.WithProxyCountDelay(50*time.Millisecond),
		xds.WithOnSynced(func(string, string, string, time.Duration) { synced.Add(1) }))
	addr, _ := serve(t, srv, "127.0.0.1:0")
	w := world{listeners: 1, routes: map[string]string{"r1": "/a", "r2": "/b"}, endpoints: []string{"10.0.0.1"}}
	v1 := w.set(t, gwA)
	srv.Update(map[string]*snapshot.Set{gwA: v1})

	recs := []*recorder{{}, {}, {}}
	c1, _ := startStoppableClient(t, addr, gwA, "p1", recs[0])
	eventually(t, "first proxy synced", func() bool { return recs[0].completeAt(v1.Version) })
	if got := recs[0].manifest().GetProxyCount(); got != 1 {
		t.Fatalf("one proxy: manifest proxy_count = %d, want 1", got)
	}
	_, stop2 := startStoppableClient(t, addr, gwA, "p2", recs[1])
	_, stop3 := startStoppableClient(t, addr, gwA, "p3", recs[2])
	eventually(t, "three proxies in sync", func() bool {
		ps := srv.Proxies()
		return len(ps) == 3 && !ps[0].Stale && !ps[1].Stale && !ps[2].Stale
	})
	// Run is not running yet: the three joins are pending as one change.
	if st := srv.Stats(); st.ProxyCountUpdates != 0 {
		t.Fatalf("count published without Run: %+v", st)
	}
	before := responsesByType(c1)
	pushes := srv.Stats().SnapshotUpdates

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Run(ctx)
	countIs := func(n uint32, recs ...*recorder) func() bool {
		return func() bool {
			for _, r := range recs {
				if m := r.manifest(); m.GetProxyCount() != n || m.GetVersion() != v1.Version {
					return false
				}
			}
			return srv.ProxyCount(gwA) == int(n)
		}
	}
	eventually(t, "proxy_count 3 on every proxy", countIs(3, recs...))
	st := srv.Stats()
	if st.ProxyCountUpdates != 1 {
		t.Errorf("three joins made %d count pushes, want 1 (coalesced)", st.ProxyCountUpdates)
	}
	if st.SnapshotUpdates != pushes {
		t.Errorf("a count change pushed a snapshot: updates %d → %d", pushes, st.SnapshotUpdates)
	}
	after := responsesByType(c1)
	for typeURL, at := range before {
		if changed := !after[typeURL].Equal(at); changed != (typeURL == snapshotv1.TypeManifest) {
			t.Errorf("%s re-sent = %v after a count change; only the Manifest should travel", typeURL, changed)
		}
	}

	stop3()
	eventually(t, "proxy_count 2 after one proxy left", countIs(2, recs[0], recs[1]))
	srv.SetProxyPods(map[string]int{gwA: 5, gwB: 7})
	eventually(t, "Ready pods raise proxy_count to 5", countIs(5, recs[0], recs[1]))
	srv.SetProxyPods(nil)
	eventually(t, "streams count again without pods", countIs(2, recs[0], recs[1]))
	eventually(t, "proxies in sync", func() bool {
		ps := srv.Proxies()
		return len(ps) == 2 && !ps[0].Stale && !ps[1].Stale
	})
	if got := synced.Load(); got != 3 {
		t.Errorf("OnSynced fired %d times, want 3 (once per proxy; count changes are not new versions)", got)
	}

	// A new version carries the current count from the start.
	w.routes["r3"] = "/c"
	v2 := w.set(t, gwA)
	srv.Update(map[string]*snapshot.Set{gwA: v2})
	eventually(t, "new version", func() bool { return recs[0].completeAt(v2.Version) })
	if got := recs[0].manifest().GetProxyCount(); got != 2 {
		t.Errorf("new version: proxy_count = %d, want 2", got)
	}
	stop2()
}

// responsesByType is when c last got a response of each type.
func responsesByType(c *xdsclient.Client) map[string]time.Time {
	out := map[string]time.Time{}
	for _, st := range c.Status() {
		out[st.TypeURL] = st.LastResponse
	}
	return out
}

// TestProxyCountChurn connects and disconnects proxies while snapshots and
// pod counts change concurrently: nothing deadlocks (the stream callbacks
// never wait on the cache) and, once quiet, every remaining proxy holds the
// latest version with the right count. Run it with -race.
func TestProxyCountChurn(t *testing.T) {
	srv := xds.NewServer(quietLogger(), xds.WithProxyCountDelay(10*time.Millisecond))
	addr, _ := serve(t, srv, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Run(ctx)
	w := world{listeners: 1, routes: map[string]string{"r": "/"}, endpoints: []string{"10.0.0.1"}}
	srv.Update(map[string]*snapshot.Set{gwA: w.set(t, gwA)})

	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			for j := range 4 {
				_, stop := startStoppableClient(t, addr, gwA, fmt.Sprintf("churn-%d-%d", i, j), &recorder{})
				time.Sleep(time.Duration(5+i*3) * time.Millisecond)
				stop()
			}
		})
	}
	wg.Go(func() {
		for j := range 20 {
			w.endpoints = []string{"10.0.0.1", fmt.Sprintf("10.0.1.%d", j+1)}
			srv.Update(map[string]*snapshot.Set{gwA: w.set(t, gwA)})
			srv.SetProxyPods(map[string]int{gwA: j % 3})
			time.Sleep(3 * time.Millisecond)
		}
	})
	stayers := []*recorder{{}, {}}
	for i, r := range stayers {
		startClient(t, addr, gwA, fmt.Sprintf("stay-%d", i), r)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("churn did not finish: deadlock?")
	}
	srv.SetProxyPods(nil)
	final := srv.Set(gwA).Version
	eventually(t, "two proxies, count 2, latest version", func() bool {
		for _, r := range stayers {
			if !r.completeAt(final) || r.manifest().GetProxyCount() != 2 {
				return false
			}
		}
		return len(srv.Proxies()) == 2
	})
}
