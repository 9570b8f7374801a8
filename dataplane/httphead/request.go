package httphead

import (
	"bufio"
	"net/http"
	"net/url"
)

// ReadRequest reads the next request from br as http.ReadRequest would,
// when its head is all in br's buffer and in the simple form (see the
// package doc): an origin-form HTTP/1.1 request with one Host field and
// at most one Content-Length. Its body, if any, is read from br through
// body (reset here), which the caller may reuse for the next request once
// this one is done. ok=false consumes nothing: give br to net/http.
func ReadRequest(br *bufio.Reader, body *Body) (req *http.Request, ok bool) {
	buf, _ := br.Peek(br.Buffered())
	hb := head(buf)
	if hb == nil {
		return nil, false
	}
	s := string(hb)
	// Request line: method SP origin-form SP HTTP/1.1 CRLF.
	sp1 := -1
	for i := 0; i < len(s) && i < 32; i++ {
		if s[i] == ' ' {
			sp1 = i
			break
		}
		if !isToken(s[i]) {
			return nil, false
		}
	}
	if sp1 <= 0 {
		return nil, false
	}
	method := s[:sp1]
	end := sp1 + 1
	for end < len(s) && s[end] > ' ' && s[end] < 0x7f {
		end++
	}
	const proto = " HTTP/1.1\r\n"
	if end == sp1+1 || s[sp1+1] != '/' || len(s) < end+len(proto) || s[end:end+len(proto)] != proto {
		return nil, false
	}
	uri := s[sp1+1 : end]
	h, cl, hasCL, ok := fields(s[end+len(proto):])
	if !ok || len(h["Host"]) != 1 {
		return nil, false
	}
	var n int64
	if hasCL {
		if n, ok = parseLength(cl); !ok {
			return nil, false
		}
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil || u.Host != "" {
		return nil, false // net/http's error
	}
	req = &http.Request{
		Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Host: h["Host"][0], RequestURI: uri, ContentLength: n, Body: http.NoBody,
	}
	delete(h, "Host") // as net/http does: req.Host has it
	br.Discard(len(hb))
	if n > 0 {
		body.Reset(br, n)
		req.Body = body
	}
	return req, true
}
