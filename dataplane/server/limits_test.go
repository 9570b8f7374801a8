package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"

	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/server"
)

// TestRequestID: a client's X-Request-Id reaches the model server and comes
// back; without one the proxy makes one up and does the same.
func TestRequestID(t *testing.T) {
	seen := make(chan string, 2)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("X-Request-Id")
	}))
	t.Cleanup(be.Close)
	_, port := serviceAt(t, be)

	for _, sent := range []string{"client-chosen-id", ""} {
		req, _ := http.NewRequest(http.MethodGet, url(port, "/x"), nil)
		if sent != "" {
			req.Header.Set("X-Request-Id", sent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got, upstream := resp.Header.Get("X-Request-Id"), <-seen
		if got == "" || got != upstream || (sent != "" && got != sent) {
			t.Errorf("sent %q: response id %q, model server saw %q", sent, got, upstream)
		}
	}
}

// TestSlowClients: headers or a body trickled in too slowly end the
// request; oversized headers are refused.
func TestSlowClients(t *testing.T) {
	be := echo(t)
	svc := backendSpec{name: "svc", addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManagerWith(t, server.Options{HeaderReadTimeout: 200 * time.Millisecond, MaxHeaderBytes: 4 << 10,
		Pipeline: pipeline.Options{BodyReadTimeout: 200 * time.Millisecond}})
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(svc, 1))}, []backendSpec{svc}))
	dial := func() net.Conn {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}

	t.Run("headers never finished", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
		start := time.Now()
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("connection not closed by the proxy: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("closed after %v", d)
		}
	})

	t.Run("body never finished", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		expectError(t, resp, http.StatusRequestTimeout, "request_timeout")
	})

	t.Run("headers too large", func(t *testing.T) {
		c := dial()
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 16<<10))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", resp.StatusCode)
		}
	})
}
