package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/infergate/infergate/dataplane/http1"
	"github.com/infergate/infergate/dataplane/pipeline"
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
			m := newManagerWith(b, server.Options{HTTP1Server: modes.server,
				Pipeline: pipeline.Options{Upstream: upstream.Options{HTTP1: modes.client}}})
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

// BenchmarkProxyOnly is the lean request path (lean server, lean client,
// a pool route) between a client and a backend that speak HTTP/1.1 with
// fixed buffers and allocate nothing, so allocs/op and B/op are the
// proxy's own: what each request costs its garbage collector. The request
// is the bench-proxy JSON case (a 1 KB chat request, a ~300 B answer).
// With -cpuprofile the profile still includes the raw client and backend
// (a few percent: a read and a write each).
func BenchmarkProxyOnly(b *testing.B) { benchProxyOnly(b, server.Options{}) }

// BenchmarkProxyTraced is BenchmarkProxyOnly with tracing on: every request
// recorded (a span tree per request, exported to nowhere) and none
// recorded (sampling ratio 0: a non-recording span and the traceparent
// sent on).
func BenchmarkProxyTraced(b *testing.B) {
	for _, c := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{{"sampled", sdktrace.AlwaysSample()}, {"unsampled", sdktrace.NeverSample()}} {
		b.Run(c.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(c.sampler), sdktrace.WithSpanProcessor(discardSpans{}))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			benchProxyOnly(b, server.Options{Pipeline: pipeline.Options{Tracer: tp.Tracer("bench")}})
		})
	}
}

// discardSpans is a span processor that drops ended spans, so the traced
// benchmark measures recording, not an exporter.
type discardSpans struct{}

func (discardSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discardSpans) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discardSpans) Shutdown(context.Context) error                  { return nil }
func (discardSpans) ForceFlush(context.Context) error                { return nil }

func benchProxyOnly(b *testing.B, opts server.Options) {
	resp := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, this is a short answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":256,"completion_tokens":9,"total_tokens":265}}`
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Tue, 24 Nov 2026 05:00:00 GMT\r\nContent-Length: " +
		strconv.Itoa(len(resp)) + "\r\n\r\n" + resp)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 8<<10)
				for {
					if _, err := readMessage(c, buf); err != nil {
						return
					}
					if _, err := c.Write(answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	pool := backendSpec{name: "pool", pool: true, addrs: []string{ln.Addr().String()}}
	port := freePort(b)
	m := newManagerWith(b, opts)
	apply(b, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/v1", ref(pool, 1))}, []backendSpec{pool}))
	body := `{"model":"bench-model","stream":false,"messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum dolor sit amet ", 36) + `"}]}`
	req := []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n" + body)
	target := "127.0.0.1:" + strconv.Itoa(int(port))
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", target)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 8<<10)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			head, err := readMessage(c, buf)
			if err != nil {
				b.Error(err)
				return
			}
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) {
				b.Errorf("answer: %q", head)
				return
			}
		}
	})
}

// readMessage reads one HTTP/1.1 message with a Content-Length body (or
// none) into buf and returns its head; it allocates nothing.
func readMessage(c net.Conn, buf []byte) ([]byte, error) {
	n := 0
	for {
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			head := buf[:i+4]
			want := i + 4 + contentLength(head)
			for n < want {
				m, err := c.Read(buf[n:want])
				if err != nil {
					return nil, err
				}
				n += m
			}
			return head, nil
		}
		if n == len(buf) {
			return nil, errors.New("message head too large")
		}
		m, err := c.Read(buf[n:])
		if err != nil {
			return nil, err
		}
		n += m
	}
}

func contentLength(head []byte) int {
	const key = "\r\nContent-Length: "
	i := bytes.Index(head, []byte(key))
	if i < 0 {
		return 0
	}
	n := 0
	for _, ch := range head[i+len(key):] {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return n
}
