package upstream

import (
	"math/rand/v2"
	"net/http"
	"strconv"
)

// RequestIDHeader carries a request's id: kept from the client when it
// sends one, generated otherwise, forwarded to the model server, echoed on
// the response and attached to the proxy's log lines about the request.
const RequestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds a client-chosen id, so logs cannot be flooded
// through it.
const maxRequestIDLen = 128

// EnsureRequestID returns r's request id, generating one when the client
// sent none (or an unusable one), and sets it on the request (for the
// upstream) and on the response.
func EnsureRequestID(w http.ResponseWriter, r *http.Request) string {
	vals := r.Header[RequestIDHeader]
	if len(vals) != 1 || vals[0] == "" || len(vals[0]) > maxRequestIDLen {
		// 64 random bits in hex: unique enough to find a request in the
		// logs, and cheap (no crypto/rand syscall per request).
		vals = []string{strconv.FormatUint(rand.Uint64(), 16)}
		r.Header[RequestIDHeader] = vals
	}
	// One slice serves both: the outgoing request's headers are cloned by
	// the reverse proxy, and nothing edits the value in place.
	w.Header()[RequestIDHeader] = vals
	return vals[0]
}

// RequestID is r's id as EnsureRequestID set it.
func RequestID(r *http.Request) string {
	return r.Header.Get(RequestIDHeader)
}
