package upstream

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders apply to one connection only and are never forwarded, either
// way (RFC 9110 section 7.6.1; the list httputil.ReverseProxy removes).
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// outboundSkipped are request headers the head writer does not copy: hop
// headers, those it writes itself (Host, Content-Length, the forwarding
// ones, which a client must not be able to forge) and the gateway's own.
var outboundSkipped = func() map[string]bool {
	m := map[string]bool{
		"Host": true, "Content-Length": true,
		"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
	}
	for _, h := range hopHeaders {
		m[h] = true
	}
	for _, h := range strippedHeaders {
		m[h] = true
	}
	return m
}()

// removeHopHeaders deletes the hop-by-hop headers of a response, those
// its Connection header names included.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

var errInvalidHost = &RequestError{errors.New("invalid Host header")}

// RequestError is a request the proxy cannot forward as it is — a header
// field it would have to write that HTTP/1.1 cannot carry (a CR or LF in
// a value, say). It is the client's error (400), never the endpoint's,
// and the same on any connection.
type RequestError struct{ Err error }

func (e *RequestError) Error() string { return "request cannot be forwarded: " + e.Err.Error() }

func (e *RequestError) Unwrap() error { return e.Err }

// writeHead writes the HTTP/1.1 request head r is forwarded with: what
// httputil.ReverseProxy (with SetXForwarded and StripGatewayHeaders) and
// (*http.Request).Write would send, built straight from the caller's
// request instead of a clone of it, which is left untouched so that a
// retry sends it again as the caller set it. contentLength is the body's
// length (0 for none).
func writeHead(bw *bufio.Writer, r *http.Request, addr string, contentLength int64) error {
	host := r.Host
	if host == "" {
		host = addr
	}
	if !httpguts.ValidHostHeader(host) {
		return errInvalidHost
	}
	uri := r.URL.RequestURI()
	if q := r.URL.RawQuery; q != "" {
		if clean := cleanQuery(q); clean != q {
			u := *r.URL
			u.RawQuery = clean
			uri = u.RequestURI()
		}
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		// Headers the Connection header names are hop-by-hop too.
		if outboundSkipped[k] || len(conn) > 0 && httpguts.HeaderValuesContainsToken(conn, k) {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return &RequestError{errors.New("invalid header field name " + strconv.Quote(k))}
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return &RequestError{errors.New("invalid header field value for " + strconv.Quote(k))}
			}
			if v == "" && k == "User-Agent" {
				continue // as net/http: an empty User-Agent means none
			}
			writeField(bw, k, v)
		}
	}
	// The client may ask for trailers (gRPC-style); the proxy passes them.
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		writeField(bw, "Te", "trailers")
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		writeField(bw, "X-Forwarded-For", ip)
	}
	writeField(bw, "X-Forwarded-Host", r.Host)
	if r.TLS == nil {
		writeField(bw, "X-Forwarded-Proto", "http")
	} else {
		writeField(bw, "X-Forwarded-Proto", "https")
	}
	switch {
	case contentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), contentLength, 10))
		bw.WriteString("\r\n")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		// net/http sends an explicit zero for methods that carry a body.
		writeField(bw, "Content-Length", "0")
	}
	_, err := bw.WriteString("\r\n")
	return err
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// cleanQuery re-encodes a query net/url cannot parse (a ';' separator or a
// bad escape), dropping what it cannot, as httputil.ReverseProxy does: the
// upstream must not read parameters the proxy saw differently.
func cleanQuery(q string) string {
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return reencode(q)
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return reencode(q)
			}
			i += 2
		}
	}
	return q
}

func reencode(q string) string {
	v, _ := url.ParseQuery(q)
	return v.Encode()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
