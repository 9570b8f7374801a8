// Package httphead parses the heads of plain HTTP/1.1 messages in their
// common form — a request or status line and simple header fields, all of
// it already in a bufio.Reader's buffer — for the proxy's lean server
// (requests from clients) and lean client (responses from backends).
// net/http's parser (http.ReadRequest, http.ReadResponse) allocates a
// string per header value and walks a textproto reader line by line; here
// a head costs one string for all of its bytes, one header map and one
// slice for its values, and common field names are not allocated at all.
//
// Anything outside that form is not parsed here: ReadRequest and
// ReadResponse then return ok=false having consumed nothing, and the
// caller hands the same bytes to net/http. So malformed and unusual
// messages — folded lines, bare LFs, obs-text, Transfer-Encoding,
// Connection other than a single keep-alive, duplicate Host or Content-Length fields, HTTP/1.0, CONNECT,
// absolute URIs — get exactly net/http's answer, and what is parsed here
// comes out as net/http would have produced it (the fuzz tests check both
// against net/http).
package httphead

import (
	"bytes"
	"net/http"
	"strings"
)

// crlf2 ends a head.
var crlf2 = []byte("\r\n\r\n")

// head returns the buffered head of the next message (through its blank
// line), or nil when it is not all buffered.
func head(buf []byte) []byte {
	i := bytes.Index(buf, crlf2)
	if i < 0 {
		return nil
	}
	return buf[:i+4]
}

// Field names whose presence sends a message to net/http: they change
// framing or connection handling (Transfer-Encoding, Connection, Trailer,
// Te, Upgrade) or net/http rewrites them (Pragma).
func unusual(key string) bool {
	switch key {
	case "Transfer-Encoding", "Connection", "Trailer", "Pragma", "Te", "Upgrade":
		return true
	}
	return false
}

// keepAlive reports whether a field is "Connection: keep-alive", which
// changes nothing on HTTP/1.1 (keep-alive is its default) but which some
// clients send on every request — openai-python's httpx among them — so
// it stays on the fast path. Any other Connection value, or a second
// Connection field, goes to net/http.
func keepAlive(key, v string) bool {
	return key == "Connection" && strings.EqualFold(v, "keep-alive")
}

// fields parses the header fields of s (the head as a string, from the
// first field line through the blank line) into a new header; ok is
// false when a field is not in the simple form "Name: value" with a
// token name, a value of visible ASCII, spaces and tabs, and CRLF line
// ends, or names an unusual field. cl is the Content-Length field's
// value, hasCL whether there is exactly one (two send the message to
// net/http).
func fields(s string) (h http.Header, cl string, hasCL, ok bool) {
	n := 0 // fields
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '\r' {
			n++
		}
	}
	n-- // the blank line
	if n < 0 {
		return nil, "", false, false
	}
	h = make(http.Header, n)
	vals := make([]string, n)
	var kbuf [64]byte
	for len(s) > 2 {
		end := 0
		for end < len(s) && s[end] != '\r' {
			end++
		}
		if end+1 >= len(s) || s[end+1] != '\n' {
			return nil, "", false, false
		}
		line := s[:end]
		s = s[end+2:]
		colon := -1
		for i := 0; i < len(line); i++ {
			if line[i] == ':' {
				colon = i
				break
			}
		}
		if colon <= 0 || colon > len(kbuf) {
			return nil, "", false, false
		}
		key, kok := canonical(kbuf[:0], line[:colon])
		if !kok {
			return nil, "", false, false
		}
		v := line[colon+1:]
		for i := 0; i < len(v); i++ {
			if c := v[i]; c != '\t' && (c < ' ' || c > '~') {
				return nil, "", false, false
			}
		}
		v = trim(v)
		if unusual(key) && !keepAlive(key, v) {
			return nil, "", false, false
		}
		if vv, dup := h[key]; dup {
			if key == "Content-Length" || key == "Host" || key == "Connection" {
				return nil, "", false, false
			}
			h[key] = append(vv, v)
			continue
		}
		vals[0] = v
		h[key], vals = vals[:1:1], vals[1:]
		if key == "Content-Length" {
			cl, hasCL = v, true
		}
	}
	return h, cl, hasCL, s == "\r\n"
}

// trim removes the spaces and tabs around a value, as net/http does.
func trim(s string) string {
	i, j := 0, len(s)
	for i < j && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	return s[i:j]
}

// canonical returns name in canonical form (textproto's) when it is a
// token; common names come from a table instead of being allocated.
func canonical(buf []byte, name string) (string, bool) {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isToken(c) {
			return "", false
		}
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		buf = append(buf, c)
		upper = c == '-'
	}
	if k, ok := common[string(buf)]; ok {
		return k, true
	}
	return string(buf), true
}

// common are the field names of typical requests and responses.
var common = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control", "Content-Length",
		"Content-Type", "Content-Encoding", "Cookie", "Date", "Expect", "Host", "Origin", "Referer", "Server",
		"Set-Cookie", "User-Agent", "Vary", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Request-Id", "Openai-Organization", "Openai-Project", "X-Stainless-Lang", "X-Stainless-Os",
		"X-Stainless-Arch", "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Package-Version",
		"X-Stainless-Retry-Count", "X-Gateway-Inference-Objective", "X-Gateway-Inference-Fairness-Id",
		"X-Gateway-Model-Name-Rewrite", "X-Gateway-Destination-Endpoint-Served", "Etag", "Last-Modified",
	} {
		m[k] = k
	}
	return m
}()

// isToken reports whether c may appear in a token (RFC 9110 section 5.6.2).
func isToken(c byte) bool {
	return c < 0x80 && tokenTable[c]
}

var tokenTable = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// parseLength parses a Content-Length value: digits only, at most 18 of
// them (net/http takes up to 63 bits; longer ones go to it).
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
