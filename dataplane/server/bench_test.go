package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/infergate/infergate/dataplane/http1"
	"github.com/infergate/infergate/dataplane/server"
	"github.com/infergate/infergate/dataplane/upstream"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// BenchmarkProxyRequest measures the whole request path in-process: client
// → listener → body model read → route → pick → upstream (keep-alive) →
// httptest backend and back, with a 1 KB JSON chat request. The direct
// sub-benchmark is the same request straight to the backend, so the
// difference is what the proxy adds. Names are server/client/kind: the
// proxy's HTTP/1 server (--http1-server) and upstream client
// (--upstream-http1), lean or stdlib. Allocations include the client's and
// the backend's.
func BenchmarkProxyRequest(b *testing.B) {
	resp := []byte(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"}}]}`)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Write(resp)
	}))
	b.Cleanup(be.Close)
	for _, modes := range []struct {
		server http1.Mode
		client upstream.HTTP1Mode
	}{{http1.Lean, upstream.HTTP1Lean}, {http1.Stdlib, upstream.HTTP1Lean}, {http1.Stdlib, upstream.HTTP1Stdlib}} {
		for _, kind := range []string{"service", "pool"} {
			pool := backendSpec{name: kind, pool: kind == "pool", addrs: []string{addr(be)}}
			port := freePort(b)
			m := newManagerWith(b, server.Options{Upstream: upstream.Options{HTTP1: modes.client}, HTTP1Server: modes.server})
			apply(b, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/v1", ref(pool, 1))}, []backendSpec{pool}))
			name := string(modes.server) + "/" + string(modes.client) + "/" + kind
			b.Run(name, func(b *testing.B) { benchPost(b, url(port, "/v1/chat/completions"), false) })
			b.Run(name+"-parallel", func(b *testing.B) { benchPost(b, url(port, "/v1/chat/completions"), true) })
		}
	}
	b.Run("direct", func(b *testing.B) { benchPost(b, be.URL+"/v1/chat/completions", false) })
	b.Run("direct-parallel", func(b *testing.B) { benchPost(b, be.URL+"/v1/chat/completions", true) })
}

// benchPost posts the request sequentially or, when parallel, from
// GOMAXPROCS*8 goroutines (ns/op is then the inverse of throughput).
func benchPost(b *testing.B, target string, parallel bool) {
	body := []byte(`{"model":"llama-3-8b","messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 80) + `"}]}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	post := func() error {
		req, _ := http.NewRequest("POST", target, bytes.NewReader(body))
		req.Header["Content-Type"] = []string{"application/json"}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	if parallel {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := post(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		return
	}
	for b.Loop() {
		if err := post(); err != nil {
			b.Fatal(err)
		}
	}
}
