package httphead

import (
	"bufio"
	"net/http"
)

// ReadResponse reads the response to req from br as http.ReadResponse
// would, when its head is all in br's buffer and in the simple form (see
// the package doc): an HTTP/1.1 response with a status from 200 to 599
// that has a body (not 204 or 304, not to a HEAD request) of the length
// its one Content-Length field gives. ok=false consumes nothing: give br
// to net/http.
func ReadResponse(br *bufio.Reader, req *http.Request) (resp *http.Response, ok bool) {
	if req != nil && req.Method == http.MethodHead {
		return nil, false
	}
	buf, _ := br.Peek(br.Buffered())
	hb := head(buf)
	if hb == nil {
		return nil, false
	}
	s := string(hb)
	// Status line: HTTP/1.1 SP 3DIGIT [SP reason] CRLF.
	const proto = "HTTP/1.1 "
	if len(s) < len(proto)+3 || s[:len(proto)] != proto {
		return nil, false
	}
	code := 0
	for _, c := range []byte(s[len(proto) : len(proto)+3]) {
		if c < '0' || c > '9' {
			return nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, false
	}
	end := len(proto) + 3
	if s[end] == ' ' {
		for end++; end < len(s) && (s[end] >= ' ' && s[end] < 0x7f || s[end] == '\t'); end++ {
		}
	}
	if end+1 >= len(s) || s[end] != '\r' || s[end+1] != '\n' {
		return nil, false
	}
	h, cl, hasCL, ok := fields(s[end+2:])
	if !ok || !hasCL {
		return nil, false
	}
	n, ok := parseLength(cl)
	if !ok {
		return nil, false
	}
	resp = &http.Response{
		Status: s[len(proto):end], StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: n, Body: http.NoBody, Request: req,
	}
	br.Discard(len(hb))
	if n > 0 {
		b := &Body{}
		b.Reset(br, n)
		resp.Body = b
	}
	return resp, true
}
