package upstream

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/infergate/infergate/proto/freeport"
)

// dropBackend answers the first request on each connection and reads the
// second in full, then closes the connection without answering — the
// model server that crashed (or dropped the connection) mid-request. It
// counts every request it read.
func dropBackend(t *testing.T) (addr string, received *atomic.Int32) {
	t.Helper()
	received = new(atomic.Int32)
	addr = serveConns(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for n := 0; ; n++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			received.Add(1)
			if n == 1 {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return addr, received
}

// TestWrittenRequestNotResent: a request the server read on a reused
// connection and then dropped is sent again only when replayable
// (idempotent method or Idempotency-Key), exactly as http.Transport
// decides — a POST, a generation, is never sent twice. Both HTTP/1 clients
// are held to the same answers.
func TestWrittenRequestNotResent(t *testing.T) {
	for _, mode := range []HTTP1Mode{HTTP1Lean, HTTP1Stdlib} {
		for _, tc := range []struct {
			name, method, key string
			resent            bool
		}{
			{"POST", "POST", "", false},
			{"POST with Idempotency-Key", "POST", "Idempotency-Key", true},
			{"POST with X-Idempotency-Key", "POST", "X-Idempotency-Key", true},
			{"GET", "GET", "", true},
		} {
			t.Run(string(mode)+"/"+tc.name, func(t *testing.T) {
				addr, received := dropBackend(t)
				u := New(slog.New(slog.DiscardHandler), Options{HTTP1: mode})
				t.Cleanup(u.Close)
				h := u.Proxy(addr, false, []string{addr})
				send := func() *sink {
					var r *http.Request
					if tc.method == "POST" {
						r = replayablePost(`{"model":"m","prompt":"p"}`)
						r.ContentLength = int64(len(`{"model":"m","prompt":"p"}`))
					} else {
						r = httptest.NewRequest("GET", "/v1/models", nil)
					}
					if tc.key != "" {
						r.Header.Set(tc.key, "k1")
					}
					w := &sink{ResponseRecorder: httptest.NewRecorder()}
					h.ServeHTTP(w, r)
					return w
				}
				if w := send(); w.err != nil || w.Code != 200 {
					t.Fatalf("first request: %v %d", w.err, w.Code)
				}
				w := send() // on the reused connection, which the server drops
				switch {
				case tc.resent && (w.err != nil || w.Code != 200 || received.Load() != 3):
					t.Fatalf("replayable request: err %v, status %d, server read %d requests; want it sent again and answered (3)", w.err, w.Code, received.Load())
				case !tc.resent && (w.err == nil || received.Load() != 2):
					t.Fatalf("non-idempotent request: err %v, server read %d requests; want an error and the request read once (2)", w.err, received.Load())
				case !tc.resent && NotSent(w.err):
					t.Fatalf("a written request reported as not sent: %v", w.err)
				}
			})
		}
	}
}

// TestNotSentOnConnectFailure: a refused connection fails the attempt
// with a *NotSentError (the caller may try another endpoint); a request
// error is a *RequestError on any connection.
func TestNotSentOnConnectFailure(t *testing.T) {
	// A port nothing listens on: freeport draws it from where no listener
	// on port 0 (another test's) can be given it meanwhile.
	port, err := freeport.On()
	if err != nil {
		t.Fatal(err)
	}
	dead := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for _, mode := range []HTTP1Mode{HTTP1Lean, HTTP1Stdlib} {
		u := New(slog.New(slog.DiscardHandler), Options{HTTP1: mode})
		t.Cleanup(u.Close)
		w := &sink{ResponseRecorder: httptest.NewRecorder()}
		u.Proxy(dead, false, nil).ServeHTTP(w, replayablePost("{}"))
		if !NotSent(w.err) {
			t.Errorf("%s: connection refused gave %v, want a *NotSentError", mode, w.err)
		}
	}

	addr, received := dropBackend(t)
	for _, mode := range []HTTP1Mode{HTTP1Lean, HTTP1Stdlib} {
		u := New(slog.New(slog.DiscardHandler), Options{HTTP1: mode})
		t.Cleanup(u.Close)
		w := &sink{ResponseRecorder: httptest.NewRecorder()}
		r := replayablePost("{}")
		r.Header["X-Gateway-Model-Name"] = []string{"evil\r\nX-Injected: 1"}
		u.Proxy(addr, false, nil).ServeHTTP(w, r)
		var re *RequestError
		if !errors.As(w.err, &re) || NotSent(w.err) {
			t.Errorf("%s: a CR/LF header value gave %v, want a *RequestError", mode, w.err)
		}
		if !strings.Contains(w.err.Error(), "X-Gateway-Model-Name") {
			t.Errorf("%s: %v does not name the field", mode, w.err)
		}
	}
	if n := received.Load(); n != 0 {
		t.Errorf("the server read %d requests with an invalid header", n)
	}
}

// TestRequestIDNotDuplicated: a server echoing X-Request-Id (vLLM does)
// does not make it appear twice next to the proxy's own, and one naming
// an endpoint in the proxy's served-endpoint header is overruled.
func TestRequestIDNotDuplicated(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(RequestIDHeader, r.Header.Get(RequestIDHeader))
		w.Header().Set(ServedHeader, "10.9.9.9:1")
		w.Header().Add("X-Other", "upstream")
		io.WriteString(w, "ok")
	})
	for _, mode := range []HTTP1Mode{HTTP1Lean, HTTP1Stdlib} {
		u := New(slog.New(slog.DiscardHandler), Options{HTTP1: mode})
		t.Cleanup(u.Close)
		w := httptest.NewRecorder()
		r := replayablePost("{}")
		id := EnsureRequestID(w, r)
		u.Proxy(b.addr(), false, []string{b.addr()}).ServeHTTP(w, r)
		if got := w.Header()[RequestIDHeader]; len(got) != 1 || got[0] != id {
			t.Errorf("%s: X-Request-Id %q, want just %q", mode, got, id)
		}
		if got := w.Header()[ServedHeader]; len(got) != 1 || got[0] != b.addr() {
			t.Errorf("%s: %s %q, want just %q", mode, ServedHeader, got, b.addr())
		}
		if got := w.Header()["X-Other"]; len(got) != 1 {
			t.Errorf("%s: X-Other %q", mode, got)
		}
	}
}
