package http1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// describe is the handler both servers run in the differential fuzz: it
// answers with everything a handler can see of the request, so any
// difference in parsing shows in the response.
var describe = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var hdr strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&hdr, "%s=%q;", k, r.Header[k])
	}
	if err != nil {
		// Framing errors end the connection the same way on both sides.
		w.Header().Set("Connection", "close")
	}
	if r.URL.Path == "/big" {
		io.WriteString(w, strings.Repeat("b", 5000)) // past the chunking buffer
	}
	fmt.Fprintf(w, "%s %q %s host=%q url=%q cl=%d te=%q close=%v trailer=%v body=%q err=%v hdr=%s",
		r.Method, r.RequestURI, r.Proto, r.Host, r.URL.String(), r.ContentLength, r.TransferEncoding, r.Close, r.Trailer, body, err != nil, hdr.String())
})

// diffServers runs describe on a lean Server and on net/http's, with the
// same limits, and returns their addresses.
func diffServers(tb testing.TB) (lean, std string) {
	tb.Helper()
	configure := func(s *http.Server) {
		s.MaxHeaderBytes = 2 << 10
		s.ReadHeaderTimeout = 5 * time.Second
		s.ErrorLog = nil
	}
	lean, _ = startServer(tb, describe, func(s *Server) { configure(s.Std) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: describe}
	configure(srv)
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return lean, ln.Addr().String()
}

// converse sends in on a new connection as one client would — all of it,
// pipelined requests included, then the end of its side — and returns
// everything the server wrote until it closed.
func converse(tb testing.TB, addr string, in []byte) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
	}()
	out, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		tb.Fatalf("%q: %s did not close the connection", in, addr)
	}
	return string(out)
}

// methods returns the methods of the requests in a connection's input,
// in order, as far as they parse: a response to HEAD has no body, so
// reading the answers back needs them.
func methods(in []byte) []string {
	var out []string
	br := bufio.NewReader(bytes.NewReader(in))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return out
		}
		out = append(out, req.Method)
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return out
		}
	}
}

// transcript reads the responses a server wrote and writes each down
// canonically — status line, header fields sorted (Date left out: it is
// the time), framing, body and trailers — so that the order in which a
// server writes its fields does not count, but every value does.
func transcript(out string, methods []string) string {
	var b strings.Builder
	br := bufio.NewReader(strings.NewReader(out))
	for i := 0; ; i++ {
		if _, err := br.Peek(1); err == io.EOF {
			return b.String()
		}
		method := "GET"
		if i < len(methods) {
			method = methods[i]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			rest, _ := io.ReadAll(br)
			fmt.Fprintf(&b, "unreadable: %v; rest %q", err, rest)
			return b.String()
		}
		body, err := io.ReadAll(resp.Body)
		resp.Header.Del("Date")
		keys := slices.Sorted(maps.Keys(resp.Header))
		fmt.Fprintf(&b, "%s %s |", resp.Proto, resp.Status)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%q", k, resp.Header[k])
		}
		fmt.Fprintf(&b, " | cl=%d te=%q close=%v body=%q err=%v trailer=%v\n", resp.ContentLength, resp.TransferEncoding, resp.Close, body, err, resp.Trailer)
		if resp.StatusCode < 200 {
			i-- // an interim answer: the final one to the same request follows
		}
	}
}

// FuzzServeLikeNetHTTP feeds whole client connections — any bytes,
// several pipelined requests — to the lean server and to net/http's, and
// requires the same answers back (see transcript): every status, field,
// error text, framing decision and body.
func FuzzServeLikeNetHTTP(f *testing.F) {
	for _, s := range []string{
		get("/") + get("/big") + "HEAD /big HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" + get("/"),
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n" + get("/"),
		"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n" + get("/"),
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + get("/"),
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nshort",
		"GET http://h/p HTTP/1.1\r\n\r\n" + get("/"),
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na\r\n" + get("/"),
	} {
		f.Add([]byte(s))
	}
	lean, std := diffServers(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.HasPrefix(in, []byte("PRI ")) || bytes.HasPrefix(in, []byte("P")) && len(in) < 4 {
			return // the HTTP/2 preface: both hand it to net/http's HTTP/2 server
		}
		ms := methods(in)
		got, want := transcript(converse(t, lean, in), ms), transcript(converse(t, std, in), ms)
		if got != want && !knownDifference(in, got) {
			t.Fatalf("input %q\n lean:   %q\n stdlib: %q", in, got, want)
		}
	})
}

// knownDifference accepts the one documented divergence (see
// TestHeadLikeNetHTTP): an empty Host field is refused like a missing
// one, where net/http takes it.
func knownDifference(in []byte, lean string) bool {
	return strings.Contains(lean, "400 Bad Request: missing required Host header") && emptyHost.Match(in)
}

var emptyHost = regexp.MustCompile(`(?im)^host:[ \t]*\r?$`)
