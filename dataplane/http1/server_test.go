package http1

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Lean, "lean": Lean, "stdlib": Stdlib} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMode("fast"); err == nil {
		t.Error("ParseMode(fast) succeeded")
	}
}

// TestFraming checks the length and encoding each kind of response gets.
func TestFraming(t *testing.T) {
	big := strings.Repeat("x", 3000)
	handlers := map[string]http.HandlerFunc{
		"/small": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") },
		"/big":   func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) },
		"/declared": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			io.WriteString(w, big)
		},
		"/flushed": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		},
		"/empty":     func(w http.ResponseWriter, r *http.Request) {},
		"/nocontent": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
		"/notmodified": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(304)
		},
		"/typed": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{}`)
		},
		"/late": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(201)
			w.Header().Set("X-Late", "ignored") // after WriteHeader: no effect, as in net/http
			io.WriteString(w, "<html>")
		},
	}
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handlers[r.URL.Path](w, r) }), nil)
	rc := dial(t, addr)
	for _, tc := range []struct {
		path, body, contentType string
		status                  int
		length                  int64 // -1: chunked
	}{
		{"/small", "hello", "text/plain; charset=utf-8", 200, 5},
		{"/big", big, "text/plain; charset=utf-8", 200, -1},
		{"/declared", big, "text/plain; charset=utf-8", 200, int64(len(big))},
		{"/flushed", "ab", "text/plain; charset=utf-8", 200, -1},
		{"/empty", "", "", 200, 0},
		{"/nocontent", "", "", 204, -1},
		{"/notmodified", "", "", 304, -1},
		{"/typed", "{}", "application/json", 200, 2},
		{"/late", "<html>", "text/html; charset=utf-8", 201, 6},
	} {
		rc.send(get(tc.path))
		resp, body := rc.read("GET")
		if resp.StatusCode != tc.status || body != tc.body || resp.Header.Get("Content-Type") != tc.contentType {
			t.Errorf("%s: status %d, body %.20q, type %q; want %d, %.20q, %q", tc.path, resp.StatusCode, body, resp.Header.Get("Content-Type"), tc.status, tc.body, tc.contentType)
		}
		chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
		switch {
		case tc.length == -1 && tc.status == 200 && !chunked:
			t.Errorf("%s: not chunked (Content-Length %d)", tc.path, resp.ContentLength)
		case tc.length >= 0 && (chunked || resp.ContentLength != tc.length):
			t.Errorf("%s: Content-Length %d, chunked %v; want %d", tc.path, resp.ContentLength, chunked, tc.length)
		case (tc.status == 204 || tc.status == 304) && resp.Header.Get("Content-Length") != "":
			t.Errorf("%s: status %d with a Content-Length", tc.path, tc.status)
		}
		if resp.Header.Get("Date") == "" {
			t.Errorf("%s: no Date header", tc.path)
		}
		if resp.Header.Get("X-Late") != "" {
			t.Errorf("%s: header set after WriteHeader was sent", tc.path)
		}
		if resp.Close {
			t.Fatalf("%s: connection not kept", tc.path)
		}
	}
}

func TestHTTP10(t *testing.T) {
	big := strings.Repeat("y", 3000)
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "ok")
	}), nil)
	rc := dial(t, addr)
	// Keep-alive asked for and a length known: kept.
	rc.send("GET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body := rc.read("GET")
	if body != "ok" || resp.Header.Get("Connection") != "keep-alive" || resp.ProtoMinor != 0 {
		t.Fatalf("1.0 keep-alive: %q, Connection %q, proto %s", body, resp.Header.Get("Connection"), resp.Proto)
	}
	// A length not known in time: no chunks for 1.0, the close ends the body.
	rc.send("GET /big HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if resp, body = rc.read("GET"); body != big || len(resp.TransferEncoding) > 0 {
		t.Fatalf("1.0 long body: %d bytes, transfer encoding %v", len(body), resp.TransferEncoding)
	}
	if !rc.closed(time.Second) {
		t.Fatal("connection kept after a 1.0 response without length")
	}
	// Without keep-alive: closed after the response.
	rc = dial(t, addr)
	rc.send("GET /small HTTP/1.0\r\n\r\n")
	if _, body = rc.read("GET"); body != "ok" || !rc.closed(time.Second) {
		t.Fatalf("1.0 without keep-alive: %q, kept", body)
	}
}

func TestHEAD(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/declared" {
			w.Header().Set("Content-Length", "1000")
		}
		io.WriteString(w, "<html>hello</html>")
	}), nil)
	rc := dial(t, addr)
	rc.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := rc.read("HEAD")
	if body != "" || resp.ContentLength != 18 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("HEAD: body %q, Content-Length %d, type %q", body, resp.ContentLength, resp.Header.Get("Content-Type"))
	}
	rc.send("HEAD /declared HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ = rc.read("HEAD"); resp.ContentLength != 1000 {
		t.Fatalf("HEAD with a declared length: %d", resp.ContentLength)
	}
	// The connection is in sync: no body bytes were sent.
	rc.send(get("/"))
	if _, body = rc.read("GET"); body != "<html>hello</html>" {
		t.Fatalf("GET after HEAD: %q", body)
	}
}

func TestPipelining(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.URL.Path, b)
	}), nil)
	rc := dial(t, addr)
	rc.send(get("/1") + "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody" +
		"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + get("/4"))
	for _, want := range []string{"/1 ", "/2 body", "/3 abc", "/4 "} {
		if _, body := rc.read("GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

func TestOptionsStar(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("handler called for %s %s", r.Method, r.RequestURI)
	}), nil)
	rc := dial(t, addr)
	rc.send("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := rc.read("OPTIONS"); resp.StatusCode != 200 || resp.ContentLength != 0 || body != "" || resp.Close {
		t.Fatalf("OPTIONS *: %d, length %d, %q, close=%v", resp.StatusCode, resp.ContentLength, body, resp.Close)
	}
}

func TestConnectionClose(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/handler-closes" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "ok")
	}), nil)
	rc := dial(t, addr)
	rc.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp, _ := rc.read("GET"); !resp.Close || !rc.closed(time.Second) {
		t.Fatal("client's Connection: close not honoured")
	}
	rc = dial(t, addr)
	rc.send(get("/handler-closes"))
	if resp, _ := rc.read("GET"); !resp.Close || !rc.closed(time.Second) {
		t.Fatal("handler's Connection: close not honoured")
	}
}

// TestMalformed: requests net/http refuses get the same answer and the
// connection closes.
func TestMalformed(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("handler called for %s %s", r.Method, r.URL)
	}), func(s *Server) { s.Std.MaxHeaderBytes = 1 << 10 })
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"garbage", "HELLO\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"bad header", "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", 400},
		{"bad length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
		{"unknown coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"http/2 framing", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"too large", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 8<<10) + "\r\n\r\n", 431},
		{"unknown expectation", "POST / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx", 417},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dial(t, addr)
			rc.send(tc.req)
			resp, _ := rc.read("GET")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if !rc.closed(2 * time.Second) {
				t.Fatal("connection kept")
			}
		})
	}
}

// TestHeadLikeNetHTTP: requests on both sides of httphead's fast path —
// the common form it parses and the malformed or unusual ones it leaves
// to net/http's parser — get the status and error text net/http's own
// server gives them, and the handler sees the same request. (An empty
// Host field is the one known difference, from before httphead: net/http
// takes it, this server answers 400 as for a missing one — see
// readRequest.)
func TestHeadLikeNetHTTP(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s host=%q cl=%d te=%v close=%v body=%q hdr=%v", r.Method, r.RequestURI, r.Proto, r.Host,
			r.ContentLength, r.TransferEncoding, r.Close, body, r.Header)
	})
	const maxHeaderBytes = 1 << 10
	lean, _ := startServer(t, h, func(s *Server) { s.Std.MaxHeaderBytes = maxHeaderBytes })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	std := &http.Server{Handler: h, MaxHeaderBytes: maxHeaderBytes}
	go std.Serve(ln)
	t.Cleanup(func() { std.Close() })
	for _, req := range []string{
		"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 2\r\nx-lower: a\r\nX-Lower:  b \r\n\r\n{}",
		"GET / HTTP/1.1\nHost: gw\n\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nX: folded\r\n more\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nX: a\x00b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nX: caf\xc3\xa9\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nContent-Length: +1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
		"GET / HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost: gw\r\nContent-Length:\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET //x/y HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET http://other/y HTTP/1.1\r\nHost: gw\r\n\r\n",
		// Absolute-form targets still need one valid Host field.
		"GET http://other/y HTTP/1.1\r\n\r\n",
		"GET http://other/y HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET http://other/y HTTP/1.1\r\nhost: a/b\r\n\r\n",
		"GET http://other/y HTTP/1.1\r\nHost: gw\r\nHost: gw2\r\n\r\n",
		"GET http://other/y HTTP/1.1\r\nHost:\r\n\r\n",
		"GET http://other/y HTTP/1.0\r\n\r\n",
		"POST http://other/y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"POST http://other/y HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: gw\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"G@T / HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET / HTTP/1.1 \r\nHost: gw\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\n: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nPragma: no-cache\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
		// HTTP/1.0, with and without keep-alive and Host.
		"GET / HTTP/1.0\r\nHost: gw\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: gw\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.0\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi",
		// Transfer-Encoding variants, alone and with Content-Length.
		"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: gw\r\ntransfer-encoding: Chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nhi",
		"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding:\r\nContent-Length: 2\r\n\r\nhi",
		// Content-Length forms the fast path parses or leaves.
		"POST / HTTP/1.1\r\nHost: gw\r\ncontent-length:  007 \r\n\r\n1234567",
		"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 1 2\r\n\r\nxy",
		"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 0x1\r\n\r\nx",
		"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 99999999999999999999\r\n\r\n",
		// Expectations (the 100 Continue comes before the answer).
		"POST / HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"POST / HTTP/1.1\r\nHost: gw\r\nexpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi",
		"GET / HTTP/1.0\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		// Field bytes, names and line ends.
		"GET / HTTP/1.1\r\nHost: gw\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nX: a\nY: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nX: a\x7fb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nX:\tv \t\r\n\r\n",
		"GET / HTTP/1.1\r\n X: lead\r\nHost: gw\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nX : a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\n" + strings.Repeat("n", 70) + ": long name\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: gw:8080\r\nx-forwarded-for: 10.0.0.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: g\tw\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nTe: trailers\r\nTrailer: X\r\n\r\n",
		// Targets: absolute, authority, asterisk, non-ASCII.
		"GET http://other/y?q=1 HTTP/1.1\r\nHost: gw\r\n\r\n",
		"CONNECT gw:443 HTTP/1.1\r\nHost: gw:443\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /a%2Fb?q=%20#frag HTTP/1.1\r\nHost: gw\r\n\r\n",
		// Heads within and beyond MaxHeaderBytes (plus net/http's 4 KiB slack).
		"GET / HTTP/1.1\r\nHost: gw\r\nX-Big: " + strings.Repeat("b", 2<<10) + "\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: gw\r\nX-Big: " + strings.Repeat("b", 6<<10) + "\r\n\r\n",
	} {
		got, want := exchangeRaw(t, lean, req), exchangeRaw(t, ln.Addr().String(), req)
		if got != want {
			t.Errorf("%q:\n lean   %s\n stdlib %s", req, got, want)
		}
	}
}

// exchangeRaw sends req and returns the statuses of the interim answers
// (100 Continue) and the status and body of the final one.
func exchangeRaw(t *testing.T, addr, req string) string {
	rc := dial(t, addr)
	rc.send(req)
	var interim string
	for {
		resp, body := rc.read("GET")
		if resp.StatusCode >= 200 {
			return interim + resp.Status + " " + body
		}
		interim += resp.Status + ", "
	}
}

func TestTimeouts(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(s *Server) {
		s.Std.ReadHeaderTimeout = 100 * time.Millisecond
		s.Std.IdleTimeout = 300 * time.Millisecond
	})
	// Headers that never end: closed after ReadHeaderTimeout.
	rc := dial(t, addr)
	rc.send("GET / HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	if !rc.closed(2 * time.Second) {
		t.Fatal("slow headers not cut off")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("slow headers cut off after %v", d)
	}
	// An idle connection lives for IdleTimeout, not ReadHeaderTimeout.
	rc = dial(t, addr)
	rc.send(get("/"))
	rc.read("GET")
	time.Sleep(150 * time.Millisecond)
	rc.send(get("/"))
	rc.read("GET")
	if !rc.closed(2 * time.Second) {
		t.Fatal("idle connection not closed")
	}
}

// TestBodyDeadlines: the header timeout does not bound the body, on the
// first request or a later one; a deadline the handler sets does.
func TestBodyDeadlines(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bounded" {
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "error")
			return
		}
		w.Write(b)
	}), func(s *Server) { s.Std.ReadHeaderTimeout = 50 * time.Millisecond })
	rc := dial(t, addr)
	for i := range 2 {
		rc.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
		time.Sleep(150 * time.Millisecond)
		rc.send("slow")
		if _, body := rc.read("POST"); body != "slow" {
			t.Fatalf("request %d: %q", i, body)
		}
	}
	rc.send("POST /bounded HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
	time.Sleep(150 * time.Millisecond)
	rc.send("slow")
	if _, body := rc.read("POST"); body != "error" {
		t.Fatalf("handler's deadline: %q", body)
	}
}

// TestDisconnectCancels: a request still running when its client goes
// away gets its context cancelled, with and without a body read first.
func TestDisconnectCancels(t *testing.T) {
	started := make(chan struct{}, 1)
	canceled := make(chan error, 1)
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			canceled <- r.Context().Err()
		case <-time.After(5 * time.Second):
			canceled <- nil
		}
	}), func(s *Server) { s.WatchAfter = 5 * time.Millisecond })
	for _, req := range []string{get("/"), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"} {
		rc := dial(t, addr)
		rc.send(req)
		<-started
		time.Sleep(20 * time.Millisecond) // past WatchAfter
		rc.c.Close()
		if err := <-canceled; err != context.Canceled {
			t.Fatalf("request context after the client left: %v", err)
		}
	}
	// Closing before the watch starts is noticed too, once it does.
	rc := dial(t, addr)
	rc.send(get("/"))
	<-started
	rc.c.Close()
	if err := <-canceled; err != context.Canceled {
		t.Fatalf("request context after an early disconnect: %v", err)
	}
}

// TestWatchKeepsPipelinedByte: a byte of the next request read by the
// background read is not lost.
func TestWatchKeepsPipelinedByte(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(50 * time.Millisecond)
		}
		io.WriteString(w, r.URL.Path)
	}), func(s *Server) { s.WatchAfter = time.Millisecond })
	rc := dial(t, addr)
	rc.send(get("/slow"))
	time.Sleep(20 * time.Millisecond) // the watch reads while the handler sleeps
	rc.send(get("/next"))
	for _, want := range []string{"/slow", "/next"} {
		if _, body := rc.read("GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

func TestExpectContinue(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ignore" {
			io.WriteString(w, "not reading")
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}), nil)
	rc := dial(t, addr)
	rc.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	resp, _ := rc.read("POST")
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("status %d before the body, want 100", resp.StatusCode)
	}
	rc.send("hello")
	if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "hello" || resp.Close {
		t.Fatalf("after 100 Continue: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	// A handler that does not want the body: no 100, and the connection
	// closes since the client may still send the body.
	rc.send("POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "not reading" || !resp.Close {
		t.Fatalf("ignored body: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
}

// TestUnreadBody: a body the handler left is read and dropped when small
// (the connection is kept), and the connection closes when it is large.
func TestUnreadBody(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), nil)
	rc := dial(t, addr)
	rc.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
	if resp, _ := rc.read("POST"); resp.Close {
		t.Fatal("small unread body: connection not kept")
	}
	rc.send(get("/"))
	if _, body := rc.read("GET"); body != "ok" {
		t.Fatalf("next request: %q", body)
	}
	rc.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + strings.Repeat("z", 1000))
	if resp, _ := rc.read("POST"); !resp.Close {
		t.Fatal("large unread body: connection kept")
	}
}

func TestTrailers(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Declared")
		io.WriteString(w, "body")
		w.Header().Set("X-Declared", "one")
		w.Header().Set(http.TrailerPrefix+"X-Late", "two")
	}), nil)
	rc := dial(t, addr)
	rc.send(get("/"))
	resp, body := rc.read("GET")
	if body != "body" || resp.Trailer.Get("X-Declared") != "one" || resp.Trailer.Get("X-Late") != "two" {
		t.Fatalf("body %q, trailers %v", body, resp.Trailer)
	}
}

// TestRequestFields: what the handler reads from the request matches
// net/http's server.
func TestRequestFields(t *testing.T) {
	got := make(chan *http.Request, 1)
	addr, s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r }), nil)
	rc := dial(t, addr)
	rc.send("GET /p?q=1 HTTP/1.1\r\nHost: example.test:8080\r\nX-A: b\r\n\r\n")
	rc.read("GET")
	r := <-got
	if r.RemoteAddr != rc.c.LocalAddr().String() || r.Host != "example.test:8080" || r.RequestURI != "/p?q=1" ||
		r.URL.Path != "/p" || r.Header.Get("X-A") != "b" || r.Header.Get("Host") != "" || r.TLS != nil || r.Proto != "HTTP/1.1" {
		t.Fatalf("request: %+v", r)
	}
	if r.Context().Value(http.ServerContextKey) != s.Std {
		t.Error("no http.ServerContextKey")
	}
	if la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr); la == nil || la.String() != addr {
		t.Errorf("LocalAddrContextKey %v, want %s", la, addr)
	}
	if r.Context().Err() == nil {
		t.Error("request context not cancelled after the handler")
	}
}

func TestH2C(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}), nil)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "HTTP/2.0" {
		t.Fatalf("prior-knowledge h2c served as %q", b)
	}
}

func TestHijack(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	}), nil)
	rc := dial(t, addr)
	rc.send("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rc.send("ping\n")
	if line, _ := rc.br.ReadString('\n'); line != "echo ping\n" {
		t.Fatalf("after the upgrade: %q", line)
	}
}

func TestPanicClosesConnection(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic(http.ErrAbortHandler)
		}
		io.WriteString(w, "ok")
	}), nil)
	rc := dial(t, addr)
	rc.send(get("/panic"))
	if !rc.closed(time.Second) {
		t.Fatal("connection kept after a panic")
	}
	rc = dial(t, addr)
	rc.send(get("/"))
	if _, body := rc.read("GET"); body != "ok" {
		t.Fatalf("after a panic: %q", body)
	}
}

func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	addr, s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	}), nil)
	idle := dial(t, addr)
	idle.send(get("/"))
	idle.read("GET")
	busy := dial(t, addr)
	busy.send(get("/slow"))
	time.Sleep(20 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	if !idle.closed(2 * time.Second) {
		t.Fatal("idle connection not closed on shutdown")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if resp, body := busy.read("GET"); body != "ok" || resp.StatusCode != 200 {
		t.Fatalf("request in flight: %d %q", resp.StatusCode, body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

func TestTLS(t *testing.T) {
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2", "http/1.1"}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s tls=%v", r.Proto, r.TLS != nil && r.TLS.HandshakeComplete)
	})
	addr, _ := startServer(t, h, func(s *Server) {
		s.Std = &http.Server{Handler: h, TLSConfig: cfg}
	})
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		want := "HTTP/1.1 tls=true"
		if h2 {
			want = "HTTP/2.0 tls=true"
		}
		if string(b) != want {
			t.Fatalf("h2=%v: %q, want %q", h2, b, want)
		}
	}
	// Plain HTTP to the TLS port gets net/http's 400.
	rc := dial(t, addr)
	rc.send(get("/"))
	if resp, _ := rc.read("GET"); resp.StatusCode != 400 {
		t.Fatalf("plain HTTP to TLS: %d", resp.StatusCode)
	}
}
