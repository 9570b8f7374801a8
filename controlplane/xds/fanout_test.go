package xds_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/xds"
	"github.com/infergate/infergate/proto/xdsclient"
)

// BenchmarkFanout measures, with N proxies of one gateway connected over
// real gRPC on loopback, the time from Update (one Endpoints resource
// changed in a 50-route snapshot) until every proxy has ACKed everything
// it was sent for that version. Each proxy's handler checks completeness,
// as the real proxy does.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("proxies=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, proxies int) {
	synced := make(chan string, proxies*4)
	srv := xds.NewServer(quietLogger(), xds.WithOnSynced(func(_, _, version string, _ time.Duration) {
		synced <- version
	}))
	addr, _ := serve(b, srv, "127.0.0.1:0")
	w := world{listeners: 2, routes: map[string]string{}, endpoints: []string{"10.0.0.1"}}
	for i := 0; i < 50; i++ {
		w.routes[fmt.Sprintf("r%d", i)] = fmt.Sprintf("/p%d", i)
	}
	waitAll := func(version string) {
		deadline := time.After(30 * time.Second)
		for got := 0; got < proxies; {
			select {
			case v := <-synced:
				if v == version {
					got++
				}
			case <-deadline:
				b.Fatalf("only %d of %d proxies synced to %s", got, proxies, version)
			}
		}
	}
	set := w.set(b, gwA)
	srv.Update(map[string]*snapshot.Set{gwA: set})
	for i := 0; i < proxies; i++ {
		startClient(b, addr, gwA, fmt.Sprintf("p%03d", i), xdsclient.HandlerFunc(func(r xdsclient.Resources) error {
			r.Complete()
			return nil
		}))
	}
	waitAll(set.Version)
	before := srv.Stats()

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.endpoints = []string{"10.0.0.1", fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)}
		set := w.set(b, gwA)
		srv.Update(map[string]*snapshot.Set{gwA: set})
		waitAll(set.Version)
	}
	b.StopTimer()
	after := srv.Stats()
	b.ReportMetric(float64(after.ResourcesSent-before.ResourcesSent)/float64(b.N)/float64(proxies), "resources/proxy/op")
}
