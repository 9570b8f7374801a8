package httphead

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// requestSeeds are common requests (which the fast path takes) and
// unusual or malformed ones (which it must leave to net/http).
var requestSeeds = []string{
	"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 11\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n{\"model\":1}",
	"GET /v1/models?x=1&y=%20 HTTP/1.1\r\nHost: gw:8080\r\nAccept: */*\r\nX-Custom-header: a\r\nx-custom-HEADER:  b \r\n\r\n",
	"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabc",
	"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost:\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET http://x/y HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET //x/y HTTP/1.1\r\nHost: a\r\n\r\n",
	"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: folded\r\n continued\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}",
	"GET / HTTP/1.1\r\nHost: a\r\nconnection:  Keep-Alive \r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: keep-alive\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
	"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\nContent-Length: 9\r\n\r\n1\r\na\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\na",
	"POST / HTTP/1.1\r\nHost: a\r\ncontent-length:  007 \r\n\r\n1234567",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nexpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\nY: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX:\tv \t\r\n\r\n",
	"GET / HTTP/1.1\r\n X: lead\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn: long name\r\n\r\n",
	"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a%2Fb?q=%20#frag HTTP/1.1\r\nHost: a\r\n\r\n",
}

// FuzzReadRequest checks ReadRequest against http.ReadRequest: a request
// the fast path takes must come out as net/http reads it (fields, body,
// what is left for the next request), and one it refuses must be left
// unread for net/http.
func FuzzReadRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkRequest(t, raw)
	})
}

func TestReadRequestMatchesNetHTTP(t *testing.T) {
	taken := 0
	for _, s := range requestSeeds {
		if checkRequest(t, []byte(s)) {
			taken++
		}
	}
	if taken < 4 {
		t.Fatalf("the fast path took %d of the seed requests; the common ones must be taken", taken)
	}
}

// TestKeepAliveTaken checks the heads openai-python (httpx) sends — with
// "Connection: keep-alive" on every request — and backends answering with
// it stay on the fast path, where any other Connection use does not.
func TestKeepAliveTaken(t *testing.T) {
	for raw, want := range map[string]bool{
		"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}": true,
		"GET / HTTP/1.1\r\nHost: a\r\nconnection:  Keep-Alive \r\n\r\n":                                                                       true,
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n":                                                                              false,
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: keep-alive\r\n\r\n":                                               false,
	} {
		if got := checkRequest(t, []byte(raw)); got != want {
			t.Errorf("%q: taken %v, want %v", raw, got, want)
		}
	}
	raw := "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na"
	if !checkResponse(t, []byte(raw), false) {
		t.Errorf("%q: not taken", raw)
	}
}

// buffered returns a reader holding all of raw in its buffer.
func buffered(raw []byte) *bufio.Reader {
	br := bufio.NewReaderSize(bytes.NewReader(raw), max(len(raw), 16))
	br.Peek(len(raw))
	return br
}

func checkRequest(t *testing.T, raw []byte) (taken bool) {
	t.Helper()
	br := buffered(raw)
	var body Body
	got, ok := ReadRequest(br, &body)
	if !ok {
		if br.Buffered() != len(raw) {
			t.Fatalf("%q: refused but consumed %d bytes", raw, len(raw)-br.Buffered())
		}
		return false
	}
	wbr := bufio.NewReader(bytes.NewReader(raw))
	want, err := http.ReadRequest(wbr)
	if err != nil {
		t.Fatalf("%q: taken, but net/http refuses it: %v", raw, err)
	}
	if got.Method != want.Method || got.RequestURI != want.RequestURI || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor || got.Host != want.Host ||
		got.ContentLength != want.ContentLength || got.Close != want.Close ||
		!reflect.DeepEqual(got.URL, want.URL) || !reflect.DeepEqual(got.Header, want.Header) ||
		!reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) || !reflect.DeepEqual(got.Trailer, want.Trailer) {
		t.Fatalf("%q:\n got %+v\nwant %+v", raw, got, want)
	}
	if (got.Body == http.NoBody) != (want.Body == http.NoBody) {
		t.Fatalf("%q: body %T, net/http's %T", raw, got.Body, want.Body)
	}
	sameRest(t, raw, got.Body, want.Body, br, wbr)
	return true
}

// sameRest compares the bodies read to their end and what is left after
// them.
func sameRest(t *testing.T, raw []byte, got, want io.Reader, br, wbr *bufio.Reader) {
	t.Helper()
	gb, gerr := io.ReadAll(got)
	wb, werr := io.ReadAll(want)
	if !bytes.Equal(gb, wb) || (gerr == nil) != (werr == nil) || gerr != nil && !errors.Is(gerr, werr) {
		t.Fatalf("%q: body %q (%v), net/http's %q (%v)", raw, gb, gerr, wb, werr)
	}
	if gerr != nil {
		return
	}
	grest, _ := io.ReadAll(br)
	wrest, _ := io.ReadAll(wbr)
	if !bytes.Equal(grest, wrest) {
		t.Fatalf("%q: left %q, net/http left %q", raw, grest, wrest)
	}
}

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Tue, 24 Nov 2026 05:00:00 GMT\r\nContent-Length: 2\r\n\r\n{}",
	"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
	"HTTP/1.1 200 OK  \r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\nstream",
	"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\n",
	"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nstream",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1  200 OK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 \xffOK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200\tOK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTrailer: X\r\n\r\na",
	"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nContent-Length: 9\r\n\r\n1\r\na\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\ncontent-length: 007\r\n\r\n1234567",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: a\rb\r\n\r\na",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n X: lead\r\n\r\na",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: folded\r\n more\r\n\r\na",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 1\n\na",
}

// FuzzReadResponse checks ReadResponse against http.ReadResponse, as
// FuzzReadRequest does for requests; method picks the request's.
func FuzzReadResponse(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(responseSeeds[0]), true)
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		checkResponse(t, raw, head)
	})
}

func TestReadResponseMatchesNetHTTP(t *testing.T) {
	taken := 0
	for _, s := range responseSeeds {
		if checkResponse(t, []byte(s), false) {
			taken++
		}
		if checkResponse(t, []byte(s), true) {
			t.Fatalf("%q: taken as the answer to a HEAD request", s)
		}
	}
	if taken < 4 {
		t.Fatalf("the fast path took %d of the seed responses; the common ones must be taken", taken)
	}
}

func checkResponse(t *testing.T, raw []byte, head bool) (taken bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://x/", nil)
	if head {
		req.Method = http.MethodHead
	}
	br := buffered(raw)
	got, ok := ReadResponse(br, req)
	if !ok {
		if br.Buffered() != len(raw) {
			t.Fatalf("%q: refused but consumed %d bytes", raw, len(raw)-br.Buffered())
		}
		return false
	}
	wbr := bufio.NewReader(bytes.NewReader(raw))
	want, err := http.ReadResponse(wbr, req)
	if err != nil {
		t.Fatalf("%q: taken, but net/http refuses it: %v", raw, err)
	}
	if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor || got.ContentLength != want.ContentLength ||
		got.Close != want.Close || got.Uncompressed != want.Uncompressed || got.Request != want.Request ||
		!reflect.DeepEqual(got.Header, want.Header) || !reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) ||
		!reflect.DeepEqual(got.Trailer, want.Trailer) {
		t.Fatalf("%q:\n got %+v\nwant %+v", raw, got, want)
	}
	sameRest(t, raw, got.Body, want.Body, br, wbr)
	return true
}

// TestBody reads a body in pieces, and one the connection cuts short.
func TestBody(t *testing.T) {
	var b Body
	b.Reset(bufio.NewReader(strings.NewReader("hello world")), 5)
	p := make([]byte, 3)
	if n, err := b.Read(p); n != 3 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	if n, err := b.Read(p); n != 2 || err != io.EOF {
		t.Fatalf("last read: %d, %v; want 2 bytes with io.EOF", n, err)
	}
	if n, err := b.Read(p); n != 0 || err != io.EOF {
		t.Fatalf("read after the end: %d, %v", n, err)
	}
	b.Reset(bufio.NewReader(strings.NewReader("hi")), 5)
	if _, err := io.ReadAll(&b); err != io.ErrUnexpectedEOF {
		t.Fatalf("short body: %v, want io.ErrUnexpectedEOF", err)
	}
}

// TestParseAllocs keeps the fast path cheap next to net/http's parser
// of the same request: a request head costs its string, the Request, its
// URL, the header map and one slice for all the values.
func TestParseAllocs(t *testing.T) {
	raw := []byte(requestSeeds[0])
	br := bufio.NewReaderSize(nil, 4096)
	var body Body
	fast := testing.AllocsPerRun(100, func() {
		br.Reset(bytes.NewReader(raw))
		br.Peek(len(raw))
		if _, ok := ReadRequest(br, &body); !ok {
			t.Fatal("refused")
		}
	})
	std := testing.AllocsPerRun(100, func() {
		br.Reset(bytes.NewReader(raw))
		if _, err := http.ReadRequest(br); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("allocations per request: %v here, %v in net/http", fast, std)
	if fast > 7 || fast > std/2 {
		t.Fatalf("%v allocations per request (net/http: %v), want at most 7 and half of net/http's", fast, std)
	}
}

// BenchmarkReadRequest compares the fast path with net/http's parser on
// a typical proxied request head (the body stays unread).
func BenchmarkReadRequest(b *testing.B) {
	raw := []byte(requestSeeds[0])
	br := bufio.NewReaderSize(nil, 4096)
	var body Body
	b.Run("httphead", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			br.Reset(bytes.NewReader(raw))
			br.Peek(len(raw))
			if _, ok := ReadRequest(br, &body); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			br.Reset(bytes.NewReader(raw))
			br.Peek(len(raw))
			if _, err := http.ReadRequest(br); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReadResponse does the same for a model server's JSON answer.
func BenchmarkReadResponse(b *testing.B) {
	raw := []byte(responseSeeds[0])
	br := bufio.NewReaderSize(nil, 4096)
	req, _ := http.NewRequest(http.MethodPost, "http://x/", nil)
	b.Run("httphead", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			br.Reset(bytes.NewReader(raw))
			br.Peek(len(raw))
			if _, ok := ReadResponse(br, req); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			br.Reset(bytes.NewReader(raw))
			br.Peek(len(raw))
			if _, err := http.ReadResponse(br, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
