package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/internal/testwait"
)

// backend is an httptest server that counts the connections it accepted
// and closed.
type backend struct {
	*httptest.Server
	opened, closed atomic.Int32
}

func newBackend(t *testing.T, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{Server: httptest.NewUnstartedServer(h)}
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.closed.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

// leanTo returns the Upstream and the lean handler for addr.
func leanTo(t *testing.T, addr string, opts Options) (*Upstream, *leanProxy) {
	t.Helper()
	opts.HTTP1 = HTTP1Lean
	u := New(slog.New(slog.DiscardHandler), opts)
	t.Cleanup(u.Close)
	h, ok := u.Proxy(addr, false, []string{"ep"}).(*leanProxy)
	if !ok {
		t.Fatal("Proxy did not return the lean client")
	}
	return u, h
}

// front serves h on a real server, so flushing, trailers and aborts behave
// as in the proxy.
func front(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// sink records an upstream failure the way the proxy's exchange does.
type sink struct {
	*httptest.ResponseRecorder
	err error
}

func (s *sink) UpstreamFailed(err error) bool { s.err = err; return true }

// replayablePost is a POST whose body can be sent again (GetBody), as the
// proxy's buffered bodies can.
func replayablePost(body string) *http.Request {
	r := httptest.NewRequest("POST", "/v1/completions", strings.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	return r
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestLeanPoolReuse(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "ok")
	})
	_, h := leanTo(t, be.addr(), Options{})
	body := `{"model":"m"}`
	for i := range 3 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, replayablePost(body))
		if w.Code != 200 || w.Body.String() != "ok" {
			t.Fatalf("request %d: %d %q", i, w.Code, w.Body)
		}
	}
	if n := be.opened.Load(); n != 1 {
		t.Errorf("%d upstream connections for 3 sequential requests, want 1", n)
	}
	if n := h.pool.idleCount(); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
}

func TestLeanNoReuse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		// w is the client side; nil for a recorder.
		w func() http.ResponseWriter
	}{
		{"connection close", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			fmt.Fprint(w, "bye")
		}, nil},
		{"partial read", func(w http.ResponseWriter, r *http.Request) {
			w.Write(bytes.Repeat([]byte("x"), 256<<10))
		}, func() http.ResponseWriter { return &failingWriter{ResponseRecorder: httptest.NewRecorder()} }},
		{"upstream cut short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("short"))
			panic(http.ErrAbortHandler)
		}, nil},
		{"bad response", func(w http.ResponseWriter, r *http.Request) {
			c, bw, _ := http.NewResponseController(w).Hijack()
			bw.WriteString("HTTP/1.1 abc\r\n\r\n")
			bw.Flush()
			time.Sleep(50 * time.Millisecond) // the proxy must not wait for the close
			c.Close()
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend(t, tc.handler)
			_, h := leanTo(t, be.addr(), Options{})
			for range 2 {
				var w http.ResponseWriter = &sink{ResponseRecorder: httptest.NewRecorder()}
				if tc.w != nil {
					w = tc.w()
				}
				h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
			}
			if n := h.pool.idleCount(); n != 0 {
				t.Errorf("%d idle connections, want 0", n)
			}
			if n := be.opened.Load(); n != 2 {
				t.Errorf("%d upstream connections for 2 requests, want 2 (no reuse)", n)
			}
			testwait.Until(t, "the backend to see every connection closed", func() bool { return be.closed.Load() == 2 })
		})
	}
}

// failingWriter is a client that goes away after the first write.
type failingWriter struct {
	*httptest.ResponseRecorder
	n int
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n++; f.n > 1 {
		return 0, errors.New("client gone")
	}
	return f.ResponseRecorder.Write(p)
}

func TestLeanIdleTimeout(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	u, h := leanTo(t, be.addr(), Options{IdleConnTimeout: 100 * time.Millisecond})
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if n := h.pool.idleCount(); n != 1 {
		t.Fatalf("%d idle connections after a request, want 1", n)
	}
	testwait.Until(t, "the idle connection to be closed", func() bool { return be.closed.Load() == 1 })
	if n := h.pool.idleCount(); n != 0 {
		t.Errorf("%d idle connections after the timeout, want 0", n)
	}
	u.mu.Lock()
	_, kept := u.pools[be.addr()]
	u.mu.Unlock()
	if kept {
		t.Error("the emptied pool is still kept")
	}
	// The handler still works with its (forgotten) pool.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Body.String() != "ok" || be.opened.Load() != 2 {
		t.Errorf("after the timeout: %q, %d connections", w.Body, be.opened.Load())
	}
}

// TestLeanCancelBeforeFirstByte: a model server still thinking when the
// client goes away (or a timeout fires) sees its connection close at once.
func TestLeanCancelBeforeFirstByte(t *testing.T) {
	for _, timeout := range []bool{false, true} {
		t.Run(fmt.Sprintf("timeout=%v", timeout), func(t *testing.T) {
			started, gone := make(chan struct{}), make(chan struct{})
			be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-r.Context().Done() // the server noticed the connection close
				close(gone)
			})
			_, h := leanTo(t, be.addr(), Options{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if timeout {
				ctx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
			} else {
				go func() { <-started; cancel() }()
			}
			w := &sink{ResponseRecorder: httptest.NewRecorder()}
			h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/completions", nil).WithContext(ctx))
			want := context.Canceled
			if timeout {
				want = context.DeadlineExceeded
			}
			if !errors.Is(w.err, want) {
				t.Errorf("failure %v, want %v", w.err, want)
			}
			select {
			case <-gone:
			case <-time.After(5 * time.Second):
				t.Fatal("the backend did not see the connection close")
			}
			if n := h.pool.idleCount(); n != 0 {
				t.Errorf("%d idle connections, want 0", n)
			}
		})
	}
}

// TestLeanStreaming: chunked bodies and SSE events reach the client as the
// upstream flushes them.
func TestLeanStreaming(t *testing.T) {
	for _, ct := range []string{"text/event-stream", "application/x-ndjson"} {
		t.Run(ct, func(t *testing.T) {
			release := make(chan struct{})
			be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct)
				fmt.Fprint(w, "data: 1\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				fmt.Fprint(w, "data: 2\n\n")
			})
			_, h := leanTo(t, be.addr(), Options{})
			resp, err := http.Get(front(t, h).URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			rd := bufio.NewReader(resp.Body)
			if line, err := rd.ReadString('\n'); line != "data: 1\n" || err != nil {
				t.Fatalf("first event %q, %v", line, err)
			}
			close(release)
			if rest, _ := io.ReadAll(rd); string(rest) != "\ndata: 2\n\n" {
				t.Fatalf("rest %q", rest)
			}
			testwait.Until(t, "the connection back in the pool", func() bool { return h.pool.idleCount() == 1 })
		})
	}
}

func TestLeanTrailers(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Announced")
		fmt.Fprint(w, "body")
		w.Header().Set("X-Announced", "a")
		w.Header().Set(http.TrailerPrefix+"X-Late", "b")
	})
	_, h := leanTo(t, be.addr(), Options{})
	resp, body := get(t, http.DefaultClient, front(t, h).URL)
	if body != "body" || resp.Trailer.Get("X-Announced") != "a" || resp.Trailer.Get("X-Late") != "b" {
		t.Fatalf("body %q, trailers %v", body, resp.Trailer)
	}
}

func TestLeanHopByHopAndForwarding(t *testing.T) {
	var got http.Header
	var host string
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		got, host = r.Header.Clone(), r.Host
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Resp", "kept")
		fmt.Fprint(w, "ok")
	})
	_, h := leanTo(t, be.addr(), Options{})
	fr := front(t, h)
	req, _ := http.NewRequest("GET", fr.URL+"/p?a=1", nil)
	req.Host = "api.example.com"
	for k, v := range map[string]string{
		"Connection": "X-Req-Hop", "X-Req-Hop": "1", "Keep-Alive": "timeout=5", "Te": "trailers, deflate",
		"Proxy-Authorization": "Basic x", "Upgrade-Insecure-Requests": "1", "X-Forwarded-For": "6.6.6.6",
		"Forwarded": "for=6.6.6.6", "X-Gateway-Inference-Objective": "o", "X-Keep": "yes",
	} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, k := range []string{"X-Req-Hop", "Keep-Alive", "Proxy-Authorization", "Forwarded", "X-Gateway-Inference-Objective", "Connection"} {
		if v, ok := got[k]; ok {
			t.Errorf("upstream got %s: %v", k, v)
		}
	}
	want := map[string]string{"Te": "trailers", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "api.example.com",
		"X-Forwarded-Proto": "http", "X-Keep": "yes", "Upgrade-Insecure-Requests": "1"}
	for k, v := range want {
		if got.Get(k) != v || len(got[k]) != 1 {
			t.Errorf("upstream got %s: %v, want %q", k, got[k], v)
		}
	}
	if host != "api.example.com" {
		t.Errorf("upstream Host %q", host)
	}
	for _, k := range []string{"X-Resp-Hop", "Keep-Alive"} {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("client got %s: %v", k, v)
		}
	}
	if resp.Header.Get("X-Resp") != "kept" || resp.Header.Get(ServedHeader) != "ep" {
		t.Errorf("client headers %v", resp.Header)
	}
}

// TestLeanLeavesRequestAlone: a retry sends the request as the caller set
// it, so the proxy must not change it.
func TestLeanLeavesRequestAlone(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	_, h := leanTo(t, be.addr(), Options{})
	r := httptest.NewRequest("GET", "http://api.example.com/x?q=1", nil)
	r.Header.Set("X-Gateway-Model-Name-Rewrite", "m")
	r.Header.Set("Connection", "X-Hop")
	r.Header.Set("X-Hop", "1")
	before, url, host := r.Header.Clone(), *r.URL, r.Host
	h.ServeHTTP(httptest.NewRecorder(), r)
	if fmt.Sprint(r.Header) != fmt.Sprint(before) || *r.URL != url || r.Host != host {
		t.Errorf("request changed: %v %v %q", r.Header, r.URL, r.Host)
	}
}

// rawBackend answers each request on a connection with reply, then closes
// the connection when closeAfter is set (without saying so).
func rawBackend(t *testing.T, reply string, closeAfter bool) (addr string, accepted *atomic.Int32, served chan string) {
	t.Helper()
	accepted = new(atomic.Int32)
	served = make(chan string, 16)
	addr = serveConns(t, func(c net.Conn) {
		accepted.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(req.Body)
			c.Write([]byte(reply))
			served <- string(b)
			if closeAfter {
				return
			}
		}
	})
	return addr, accepted, served
}

// serveConns accepts loopback connections until the test ends, each
// served by serve on a goroutine of its own and closed after it.
func serveConns(t *testing.T, serve func(net.Conn)) (addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return ln.Addr().String()
}

// TestLeanStaleConnection: a pooled connection the server closed is
// replaced once, transparently, with the body sent again.
func TestLeanStaleConnection(t *testing.T) {
	addr, accepted, served := rawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true)
	_, h := leanTo(t, addr, Options{})
	body := `{"model":"m"}`
	post := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, replayablePost(body))
		return w
	}
	if w := post(); w.Code != 200 || w.Body.String() != "ok" {
		t.Fatalf("first: %d %q", w.Code, w.Body)
	}
	<-served
	testwait.Until(t, "the server to close", func() bool {
		// The pooled connection reads EOF once the server's close arrived.
		c := h.pool.get()
		if c == nil {
			return true
		}
		defer h.pool.put(c)
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		defer c.SetReadDeadline(time.Time{})
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	})
	if w := post(); w.Code != 200 || w.Body.String() != "ok" {
		t.Fatalf("on a stale connection: %d %q", w.Code, w.Body)
	}
	if got := <-served; got != body {
		t.Errorf("retried body %q", got)
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// TestLeanNoRetryOnFreshConnection: a new connection closed without an
// answer is a failure of the attempt, not something to repeat.
func TestLeanNoRetryOnFreshConnection(t *testing.T) {
	addr, accepted, served := rawBackend(t, "", true)
	_, h := leanTo(t, addr, Options{})
	w := &sink{ResponseRecorder: httptest.NewRecorder()}
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	<-served
	if w.err == nil || accepted.Load() != 1 {
		t.Errorf("failure %v after %d connections, want an error after 1", w.err, accepted.Load())
	}
}

func TestLeanInformational(t *testing.T) {
	addr, _, _ := rawBackend(t, "HTTP/1.1 100 Continue\r\n\r\n"+
		"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
	_, h := leanTo(t, addr, Options{})
	var codes []int
	var link string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		codes = append(codes, code)
		link = hdr.Get("Link")
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", front(t, h).URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Every interim answer passes, as httputil.ReverseProxy passes them.
	if string(b) != "ok" || fmt.Sprint(codes) != "[100 103]" || link == "" || resp.Header.Get("Link") != "" {
		t.Errorf("body %q, 1xx %v (Link %q), final headers %v", b, codes, link, resp.Header)
	}
}

// TestLeanStreamedUploadFallsBack: a body that is not replayable goes
// through httputil.ReverseProxy.
func TestLeanStreamedUploadFallsBack(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %v", b, r.TransferEncoding)
	})
	_, h := leanTo(t, be.addr(), Options{})
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("part1 "))
		pw.Write([]byte("part2"))
		pw.Close()
	}()
	resp, err := http.Post(front(t, h).URL, "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "part1 part2 [chunked]" {
		t.Errorf("upstream got %q", b)
	}
	if n := h.pool.idleCount(); n != 0 {
		t.Errorf("the lean pool was used (%d idle)", n)
	}
}

// TestLeanRequestWrites: a buffered body goes out with the head in one
// write, a large one in one write of its own.
func TestLeanRequestWrites(t *testing.T) {
	u := New(slog.New(slog.DiscardHandler), Options{})
	for _, tc := range []struct {
		size, writes int
	}{{0, 1}, {1 << 10, 1}, {220 << 10, 2}} {
		body := bytes.Repeat([]byte("x"), tc.size)
		r := httptest.NewRequest("POST", "/v1/completions", nil)
		r.ContentLength = int64(tc.size)
		c := &countConn{}
		written, err := u.writeRequest(c, r, bytes.NewReader(body), "10.0.0.1:8000")
		if err != nil {
			t.Fatal(err)
		}
		if written != int64(c.buf.Len()) {
			t.Errorf("%d bytes: reported %d written, the connection took %d", tc.size, written, c.buf.Len())
		}
		if c.writes != tc.writes {
			t.Errorf("%d bytes: %d writes, want %d", tc.size, c.writes, tc.writes)
		}
		req, err := http.ReadRequest(bufio.NewReader(&c.buf))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(req.Body)
		if !bytes.Equal(got, body) || req.ContentLength != int64(tc.size) {
			t.Errorf("%d bytes: sent %d (Content-Length %d)", tc.size, len(got), req.ContentLength)
		}
	}
	// A body longer than its Content-Length is cut there (the stream on
	// the connection stays valid); a shorter one is an error.
	r := httptest.NewRequest("POST", "/", nil)
	r.ContentLength = 3
	c := &countConn{}
	if _, err := u.writeRequest(c, r, strings.NewReader("toolong"), "a:1"); err != nil || !strings.HasSuffix(c.buf.String(), "\r\n\r\ntoo") {
		t.Errorf("long body: %v, sent %q", err, c.buf.String())
	}
	if _, err := u.writeRequest(&countConn{}, r, strings.NewReader("a"), "a:1"); err == nil {
		t.Error("short body accepted")
	}
}

func TestParseHTTP1Mode(t *testing.T) {
	for in, want := range map[string]HTTP1Mode{"": HTTP1Lean, "lean": HTTP1Lean, "stdlib": HTTP1Stdlib} {
		if got, err := ParseHTTP1Mode(in); got != want || err != nil {
			t.Errorf("ParseHTTP1Mode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseHTTP1Mode("fast"); err == nil {
		t.Error("unknown mode accepted")
	}
	u := New(slog.New(slog.DiscardHandler), Options{HTTP1: HTTP1Stdlib})
	if _, ok := u.Proxy("127.0.0.1:1", false, nil).(*leanProxy); ok {
		t.Error("stdlib mode built the lean client")
	}
	u = New(slog.New(slog.DiscardHandler), Options{})
	if _, ok := u.Proxy("127.0.0.1:1", true, nil).(*leanProxy); ok {
		t.Error("h2c endpoint got the lean client")
	}
}

// idleCount is the number of idle connections (for tests).
func (p *hostPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
