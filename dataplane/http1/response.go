package http1

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// bufferBeforeChunkingSize is how much of a response of unknown length is
// held back: a handler that ends within it gets a Content-Length instead
// of chunked encoding (net/http's value).
const bufferBeforeChunkingSize = 2048

// response is the http.ResponseWriter of one request. WriteHeader writes
// the status line and the handler's headers into the connection's buffer
// at once (so later changes to Header() do not apply, as in net/http,
// without copying the headers); the framing headers — Content-Length or
// Transfer-Encoding, Connection, a sniffed Content-Type — follow when the
// first body bytes show what they must be (finishHead).
type response struct {
	c      *conn
	req    *http.Request
	ctx    *reqCtx
	header http.Header
	body   reqBody

	status      int
	wroteHeader bool // WriteHeader called
	headDone    bool // the head is complete in the buffer
	handlerDone bool
	is11        bool
	isHEAD      bool
	bodyAllowed bool
	chunked     bool
	closeAfter  bool
	fullDuplex  bool
	// Read from the request and the handler's headers when they are
	// written, since the handler may change both afterwards.
	wants10KeepAlive bool
	wantsClose       bool
	contentLength    int64 // declared by the handler or computed; -1 unknown
	written          int64
	te               string   // the handler's Transfer-Encoding
	connHeader       []string // the handler's Connection header
	hasType          bool     // the handler set Content-Type (or Content-Encoding)
	hasTrailers      bool
	trailers         []string // declared in the Trailer header

	// contMu orders a 100 Continue (written by whoever reads the body)
	// against the response head.
	contMu      sync.Mutex
	canContinue bool
}

// newResponse prepares w for req; nil when the request was answered
// already (an expectation it cannot meet).
func (c *conn) newResponse(req *http.Request) *response {
	ctx := &reqCtx{Context: c.ctx}
	orig := req
	req = req.WithContext(ctx)
	req.RemoteAddr = c.remoteAddr
	req.TLS = c.tlsState
	w := &response{c: c, req: req, ctx: ctx, contentLength: -1,
		is11: req.ProtoAtLeast(1, 1), isHEAD: req.Method == http.MethodHead,
		wants10KeepAlive: req.ProtoMajor == 1 && req.ProtoMinor == 0 && hasToken(req.Header["Connection"], "keep-alive"),
		wantsClose:       req.Close || hasToken(req.Header["Connection"], "close"),
	}
	bodyDone := req.Body == nil || req.Body == http.NoBody
	if !bodyDone {
		w.body = reqBody{rc: req.Body, w: w, orig: orig}
		req.Body = &w.body
	}
	if expect := req.Header["Expect"]; len(expect) > 0 {
		if hasToken(expect[:1], "100-continue") {
			if w.is11 && req.ContentLength != 0 && !bodyDone {
				w.body.expectContinue = true
				w.canContinue = true
			}
		} else if expect[0] != "" {
			w.closeAfter = true
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusExpectationFailed)
			w.finish()
			ctx.cancel()
			return nil
		}
	}
	c.startWatch(w, bodyDone)
	return w
}

// cancel ends the request's context.
func (w *response) cancel() { w.ctx.cancel() }

// Header implements http.ResponseWriter.
func (w *response) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// WriteHeader implements http.ResponseWriter.
func (w *response) WriteHeader(code int) {
	if w.c.hijacked {
		w.c.s.logger().Debug("http1: response.WriteHeader on hijacked connection")
		return
	}
	if w.wroteHeader {
		w.c.s.logger().Debug("http1: superfluous response.WriteHeader call", "status", code)
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	h := w.Header()
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational: its own head, now.
		w.contMu.Lock()
		if code == http.StatusContinue {
			w.canContinue = false
		}
		w.writeStatusLine(code)
		w.writeHeaders(h, true)
		w.c.bw.WriteString("\r\n")
		w.c.bw.Flush()
		w.contMu.Unlock()
		return
	}
	w.wroteHeader = true
	w.status = code
	w.contMu.Lock()
	w.canContinue = false
	w.contMu.Unlock()
	w.bodyAllowed = bodyAllowedForStatus(code)
	if cl := h["Content-Length"]; len(cl) > 0 && cl[0] != "" {
		if v, err := strconv.ParseInt(cl[0], 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			w.c.s.logger().Debug("http1: invalid Content-Length", "value", cl[0])
		}
	}
	if te := h["Transfer-Encoding"]; len(te) > 0 {
		w.te = te[0]
	}
	w.connHeader = h["Connection"]
	if len(w.connHeader) > 0 && w.connHeader[0] == "close" {
		w.closeAfter = true // as net/http: the exact value only
	}
	_, w.hasType = h["Content-Type"]
	if ce := h["Content-Encoding"]; len(ce) > 0 && ce[0] != "" {
		w.hasType = true // compressed bodies are not sniffed
	}
	for _, v := range h["Trailer"] {
		w.hasTrailers = true
		for f := range strings.SplitSeq(v, ",") {
			if k := http.CanonicalHeaderKey(textproto.TrimString(f)); k != "" && httpguts.ValidTrailerHeader(k) {
				w.trailers = append(w.trailers, k)
			}
		}
	}
	w.writeStatusLine(code)
	w.writeHeaders(h, false)
	if _, ok := h["Date"]; !ok {
		w.writeDate()
	}
}

// writeStatusLine writes "HTTP/1.x code text".
func (w *response) writeStatusLine(code int) {
	bw := w.c.bw
	if w.is11 {
		bw.WriteString("HTTP/1.1 ")
	} else {
		bw.WriteString("HTTP/1.0 ")
	}
	bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(code), 10))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(code), 10))
	}
	bw.WriteString("\r\n")
}

// writeHeaders writes the handler's headers except the framing ones and
// trailers. A final head's framing headers and Connection follow in
// finishHead; an informational head gets Connection now and no framing
// headers at all (net/http's excludedHeadersNoBody).
func (w *response) writeHeaders(h http.Header, informational bool) {
	bw := w.c.bw
	for k, vv := range h {
		switch k {
		case "Content-Length", "Transfer-Encoding":
			continue
		case "Connection":
			if !informational {
				continue
			}
		case "Content-Type":
			if w.status == http.StatusNotModified {
				continue
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			w.hasTrailers = true
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue // net/http drops them too: the handler cannot be told
		}
		for _, v := range vv {
			writeHeaderLine(bw, k, v)
		}
	}
}

// headerNewlineToSpace keeps a handler's value from splitting the head.
var headerNewlineToSpace = strings.NewReplacer("\n", " ", "\r", " ")

func writeHeaderLine(bw *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = headerNewlineToSpace.Replace(v)
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(textproto.TrimString(v))
	bw.WriteString("\r\n")
}

func (w *response) writeDate() {
	c := w.c
	now := time.Now()
	if sec := now.Unix(); sec != c.dateSec || c.date == nil {
		c.dateSec = sec
		c.date = now.UTC().AppendFormat(c.date[:0], http.TimeFormat)
	}
	c.bw.WriteString("Date: ")
	c.bw.Write(c.date)
	c.bw.WriteString("\r\n")
}

// finishHead completes the head once the first body bytes p are known
// (final: the handler is done and p is the whole body), following
// net/http's chunkWriter.writeHeader.
func (w *response) finishHead(p []byte, final bool) {
	w.headDone = true
	bw := w.c.bw
	hasCL := w.contentLength != -1
	if final && !w.hasTrailers && w.te == "" && w.bodyAllowed && !hasCL && (!w.isHEAD || len(p) > 0) {
		w.contentLength = int64(len(p))
		hasCL = true
	}
	keepAlive10 := false
	if w.wants10KeepAlive && (w.isHEAD || hasCL || !w.bodyAllowed) {
		keepAlive10 = w.connHeader == nil
	} else if !w.is11 || w.wantsClose {
		w.closeAfter = true
	}
	w.discardUnreadBody()
	if w.bodyAllowed && !w.hasType && w.te == "" && len(p) > 0 {
		bw.WriteString("Content-Type: ")
		bw.WriteString(http.DetectContentType(p))
		bw.WriteString("\r\n")
	}
	if hasCL && w.te != "" && w.te != "identity" {
		w.c.s.logger().Debug("http1: WriteHeader called with both Transfer-Encoding and Content-Length", "transfer_encoding", w.te)
		hasCL = false
		w.contentLength = -1
	}
	switch {
	case w.isHEAD || !w.bodyAllowed:
	case hasCL:
	case w.is11 && w.te == "identity":
		w.closeAfter = true
	case w.is11:
		w.chunked = true
	default:
		w.closeAfter = true
	}
	if hasCL && w.bodyAllowed { // not for 1xx, 204, 304
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(w.c.scratch[:0], w.contentLength, 10))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.closeAfter && !hasToken(w.connHeader, "close") && w.status != http.StatusSwitchingProtocols:
		if w.is11 {
			bw.WriteString("Connection: close\r\n")
		}
	case keepAlive10:
		bw.WriteString("Connection: keep-alive\r\n")
	default:
		for _, v := range w.connHeader {
			writeHeaderLine(bw, "Connection", v)
		}
	}
	bw.WriteString("\r\n")
}

// discardUnreadBody reads what is left of a request body the handler is
// answering before it read it all, as net/http does, so the connection
// can serve the next request: up to 256 KiB, else the connection closes.
func (w *response) discardUnreadBody() {
	b := &w.body
	if b.rc == nil {
		return
	}
	b.mu.Lock()
	done, closed, expect, n := b.sawEOF, b.closed, b.expectContinue, b.n
	b.mu.Unlock()
	if done {
		return
	}
	if expect || closed {
		// The client waits for a 100 Continue that will not come, or the
		// handler gave up on the body: do not read it, close after.
		w.closeAfter = true
		return
	}
	if w.req.ContentLength == 0 || w.closeAfter || w.fullDuplex {
		return
	}
	if cl := w.req.ContentLength; cl > 0 && cl-n >= maxPostHandlerReadBytes {
		w.closeAfter = true
		return
	}
	if !b.discard() {
		w.closeAfter = true
	}
}

// Write implements http.ResponseWriter.
func (w *response) Write(p []byte) (int, error) {
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.bodyAllowed {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	switch {
	case w.headDone:
	case w.contentLength != -1:
		w.finishHead(p, false)
	case len(w.c.pend)+len(p) <= bufferBeforeChunkingSize:
		w.c.pend = append(w.c.pend, p...)
		return len(p), nil
	case len(w.c.pend) == 0:
		w.finishHead(p, false) // sniffed from p
	default:
		if err := w.flushPending(false); err != nil {
			return 0, err
		}
	}
	if w.isHEAD {
		return len(p), nil // HEAD bodies are dropped
	}
	return w.writeBody(p)
}

// flushPending completes the head with the held-back body and writes it.
func (w *response) flushPending(final bool) error {
	if w.headDone {
		return nil
	}
	pend := w.c.pend
	w.finishHead(pend, final)
	w.c.pend = pend[:0]
	if len(pend) == 0 || w.isHEAD {
		return nil
	}
	_, err := w.writeBody(pend)
	return err
}

func (w *response) writeBody(p []byte) (int, error) {
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendUint(w.c.scratch[:0], uint64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		if _, err := bw.WriteString("\r\n"); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return bw.Write(p)
}

// Flush implements http.Flusher.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError sends what was written so far (http.ResponseController).
func (w *response) FlushError() error {
	if w.c.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if err := w.flushPending(false); err != nil {
		return err
	}
	return w.c.bw.Flush()
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.staleDeadline.Store(false)
	return w.c.rwc.SetReadDeadline(t)
}
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// EnableFullDuplex lets the handler read the body after it started the
// response (http.ResponseController).
func (w *response) EnableFullDuplex() error {
	w.fullDuplex = true
	return nil
}

// Hijack implements http.Hijacker (httputil.ReverseProxy uses it for
// protocol upgrades).
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if c.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.handlerDone {
		return nil, nil, errors.New("http1: Hijack called after the handler returned")
	}
	if w.wroteHeader {
		if err := w.FlushError(); err != nil {
			return nil, nil, err
		}
	}
	w.contMu.Lock()
	w.canContinue = false
	w.contMu.Unlock()
	c.endWatch()
	c.hijacked = true
	c.r.mu.Lock()
	hasByte := c.r.hasByte
	c.r.mu.Unlock()
	if hasByte {
		// The byte the background read took belongs to the new owner.
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			return nil, nil, err
		}
	}
	c.staleDeadline.Store(false)
	c.rwc.SetDeadline(time.Time{})
	return c.rwc, bufio.NewReadWriter(c.br, c.bw), nil
}

// finish completes the response after the handler returned.
func (w *response) finish() {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.flushPending(true)
	if w.chunked {
		bw := w.c.bw
		bw.WriteString("0\r\n")
		w.writeTrailers()
		bw.WriteString("\r\n")
	}
	w.c.bw.Flush()
	w.body.finish()
}

// writeTrailers writes the declared trailers and the TrailerPrefix ones
// with their final values.
func (w *response) writeTrailers() {
	bw := w.c.bw
	for k, vv := range w.header {
		if kk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && httpguts.ValidHeaderFieldName(kk) {
			for _, v := range vv {
				writeHeaderLine(bw, kk, v)
			}
		}
	}
	for _, k := range w.trailers {
		for _, v := range w.header[k] {
			writeHeaderLine(bw, k, v)
		}
	}
}

// reuse reports whether the connection may serve another request.
func (w *response) reuse() bool {
	if w.closeAfter {
		return false
	}
	if !w.isHEAD && w.contentLength != -1 && w.bodyAllowed && w.contentLength != w.written {
		return false // short of the announced length: out of sync
	}
	w.c.r.mu.Lock()
	werr := w.c.r.werr
	w.c.r.mu.Unlock()
	if werr != nil {
		return false
	}
	return w.body.rc == nil || w.body.drained()
}

func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == http.StatusNoContent, status == http.StatusNotModified:
		return false
	}
	return true
}

// hasToken reports whether token (lower case) appears in the first value
// of a field, ASCII case-insensitively, between space, tab or comma
// boundaries: net/http's server reads Connection and Expect this way
// (its unexported hasToken), looser than a comma-separated token list —
// "Connection: close 0" asks it to close.
func hasToken(vv []string, token string) bool {
	if len(vv) == 0 || len(token) > len(vv[0]) || token == "" {
		return false
	}
	v := vv[0]
	boundary := func(b byte) bool { return b == ' ' || b == ',' || b == '\t' }
	for sp := 0; sp+len(token) <= len(v); sp++ {
		if sp > 0 && !boundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !boundary(v[end]) {
			continue
		}
		if strings.EqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}
