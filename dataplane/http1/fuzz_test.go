package http1

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// FuzzServe feeds arbitrary bytes to a connection: the server must not
// panic, and what it writes must parse as a sequence of well-formed
// responses, one per request the handler saw (plus 100 Continue and a
// final error reply).
func FuzzServe(f *testing.F) {
	for _, s := range []string{
		get("/") + get("/x"),
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"POST /big HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"HEAD /big HTTP/1.1\r\nHost: x\r\n\r\nGET /trailer HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET /flush HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + get("/"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		if strings.HasPrefix(input, "P") {
			input = "X" + input // the HTTP/2 preface hands the connection to net/http
		}
		var (
			mu      sync.Mutex
			methods []string
		)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			methods = append(methods, r.Method)
			mu.Unlock()
			b, _ := io.ReadAll(r.Body)
			switch r.URL.Path {
			case "/big":
				io.WriteString(w, strings.Repeat("b", 3000))
			case "/flush":
				io.WriteString(w, "a")
				w.(http.Flusher).Flush()
				w.Write(b)
			case "/trailer":
				w.Header().Set("Trailer", "X-T")
				w.Write(b)
				w.Header().Set("X-T", "v")
			default:
				w.Write(b)
			}
		})
		out := serveInput(h, input)
		br := bufio.NewReader(strings.NewReader(out))
		for i := 0; ; {
			if _, err := br.Peek(1); err == io.EOF {
				break
			}
			method := http.MethodGet
			if i < len(methods) {
				method = methods[i]
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("response %d unreadable: %v\noutput:\n%q", i, err, out)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("response %d body: %v\noutput:\n%q", i, err, out)
			}
			if resp.StatusCode >= 200 {
				i++
			}
			if i > len(methods)+1 {
				t.Fatalf("%d responses to %d requests\noutput:\n%q", i, len(methods), out)
			}
		}
	})
}
