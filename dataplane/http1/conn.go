package http1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/infergate/infergate/dataplane/httphead"
	"github.com/infergate/infergate/dataplane/rawconn"
)

// Connection states, for Shutdown: idle connections are closed at once,
// new ones after newConnGrace (as net/http does), active ones when their
// request is done.
const (
	stateNew int32 = iota
	stateActive
	stateIdle
)

// newConnGrace is how long Shutdown lets a new connection send its first
// request (net/http's 5 s).
const newConnGrace = 5 * time.Second

// rstAvoidanceDelay is how long a connection closed after an error reply
// keeps reading, so the client sees the reply before a TCP reset
// (net/http's value).
const rstAvoidanceDelay = 500 * time.Millisecond

// h2Preface opens every prior-knowledge HTTP/2 connection.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
	// aLongTimeAgo is a deadline in the past: it interrupts a blocked read.
	aLongTimeAgo = time.Unix(1, 0)
)

// conn is one client connection, served by one goroutine.
type conn struct {
	s          *Server
	raw        net.Conn // as accepted: what Shutdown and Close close
	rwc        net.Conn // raw, or the *tls.Conn after a TLS handshake
	sock       net.Conn // requests and responses: rwc, raw syscalls for TCP (rawconn)
	ctx        context.Context
	remoteAddr string
	tlsState   *tls.ConnectionState
	created    time.Time
	state      atomic.Int32

	r  connReader
	br *bufio.Reader
	bw *bufio.Writer
	// body reads the body of a request httphead parsed; one request at a
	// time uses it (its reqBody refuses reads once the request is done).
	body httphead.Body

	// we is the connection's place in the server's watcher (startWatch).
	we       watchEntry
	hijacked bool
	// staleDeadline says the connection's read deadline is still the one
	// for reading the request head.
	staleDeadline atomic.Bool
	lastMethod    string
	// pend holds the first bytes of a response of unknown length, so a
	// short one gets a Content-Length instead of chunks.
	pend []byte
	// dateSec/date cache the Date header for the current second.
	dateSec int64
	date    []byte
	scratch [20]byte
}

func (s *Server) newConn(rwc net.Conn, base context.Context) *conn {
	c := &conn{s: s, raw: rwc, rwc: rwc, created: time.Now()}
	c.r.c = c
	c.r.cond.L = &c.r.mu
	if !s.track(c) {
		return nil
	}
	c.ctx = context.WithValue(base, http.LocalAddrContextKey, rwc.LocalAddr())
	return c
}

// serve serves the connection until it closes, is handed to Std or is
// hijacked.
func (c *conn) serve() {
	owned := true // false once the connection belongs to someone else
	var w *response
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.s.logger().Error("http1: panic serving request", "remote", c.remoteAddr, "err", fmt.Sprint(err), "stack", string(buf))
		}
		if w != nil {
			w.cancel()
			c.endWatch()
			w.body.finish() // nobody reads the buffers we give back below
		}
		if owned && !c.hijacked {
			c.rwc.Close()
			c.release()
		}
		c.s.untrack(c)
	}()
	if ra := c.rwc.RemoteAddr(); ra != nil {
		c.remoteAddr = ra.String()
	}
	if c.s.tlsConfig != nil {
		if !c.handshake() {
			return
		}
		if c.tlsState.NegotiatedProtocol == "h2" {
			owned = false
			c.s.handoff(c.rwc)
			return
		}
		c.sock = c.rwc
	} else {
		c.sock = rawconn.New(c.rwc)
	}
	// Header bytes are counted from the first read (the preface check
	// reads ahead); bytes of the next request already buffered with the
	// previous one come on top, at most one buffer.
	headerLimit := c.s.maxHeaderBytes() + 4096 // net/http's slack
	c.r.setLimit(headerLimit)
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(&c.r)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(connWriter{c})

	hdrTimeout, idleTimeout := c.s.Std.ReadHeaderTimeout, c.s.Std.IdleTimeout
	if hdrTimeout > 0 {
		c.rwc.SetReadDeadline(time.Now().Add(hdrTimeout))
	}
	if c.tlsState == nil && c.h2Preface() {
		c.rwc.SetReadDeadline(time.Time{})
		owned = false
		c.s.handoff(&replayConn{Conn: c.rwc, br: c.br})
		return
	}
	for first := true; ; first = false {
		if !first {
			c.r.setLimit(headerLimit)
		}
		if !first && c.br.Buffered() < 4 {
			// Wait for the next request (a pipelined one is already
			// here). Like net/http, wait for four bytes: a connection
			// that ends with fewer after a request gets no answer.
			c.state.Store(stateIdle)
			if idleTimeout > 0 {
				c.rwc.SetReadDeadline(time.Now().Add(idleTimeout))
			} else {
				c.rwc.SetReadDeadline(time.Time{})
			}
			if _, err := c.br.Peek(4); err != nil {
				return
			}
		}
		c.state.Store(stateActive)
		if !first && hdrTimeout > 0 && !c.headBuffered() {
			c.rwc.SetReadDeadline(time.Now().Add(hdrTimeout))
		}
		req, err := c.readRequest()
		if c.s.shutdown.Load() {
			return
		}
		if err != nil {
			c.replyError(err)
			return
		}
		// The deadline of the head is lifted before the body is read
		// (clearStaleDeadline) unless the handler sets its own first: a
		// request without a body, or whose handler bounds the body read,
		// saves a deadline change.
		c.staleDeadline.Store(hdrTimeout > 0 || idleTimeout > 0)
		w = c.newResponse(req)
		if w == nil {
			return // 417 sent
		}
		handler := c.s.Std.Handler
		if w.req.RequestURI == "*" && w.req.Method == http.MethodOptions {
			handler = optionsHandler{} // as net/http answers it
		}
		handler.ServeHTTP(w, w.req)
		// As in net/http, the request's context ends with the handler.
		w.cancel()
		c.endWatch()
		if c.hijacked {
			return
		}
		w.finish()
		reuse, unread := w.reuse(), w.body.rc != nil && !w.body.drained()
		w = nil
		if !reuse {
			if unread {
				// The client may still be sending the body: closing now
				// would reset the connection before it read the answer.
				c.closeWriteAndWait()
			}
			return
		}
	}
}

// handshake runs the TLS handshake within ReadHeaderTimeout; a client
// that speaks plain HTTP to the TLS port gets a 400 like net/http gives.
func (c *conn) handshake() bool {
	tc := tls.Server(c.rwc, c.s.tlsConfig)
	c.rwc = tc
	if d := c.s.Std.ReadHeaderTimeout; d > 0 {
		tc.SetDeadline(time.Now().Add(d))
	}
	if err := tc.HandshakeContext(c.ctx); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			re.Conn.Close()
		}
		c.s.logger().Debug("http1: TLS handshake error", "remote", c.remoteAddr, "err", err)
		return false
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tlsState = &st
	return true
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// h2Preface reports whether the connection opens with the HTTP/2 preface
// (prior-knowledge h2c). The first 14 bytes are checked before waiting
// for all 24, so a short HTTP/1 request is never waited on.
func (c *conn) h2Preface() bool {
	if b, err := c.br.Peek(1); err != nil || b[0] != 'P' {
		return false
	}
	for _, n := range []int{len("PRI * HTTP/2.0"), len(h2Preface)} {
		b, err := c.br.Peek(n)
		if err != nil || string(b) != h2Preface[:n] {
			return false
		}
	}
	return true
}

// headBuffered reports whether the next request's head is already in the
// buffer, so reading it cannot block and needs no deadline of its own.
func (c *conn) headBuffered() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

// clearStaleDeadline lifts the head's read deadline before the body is
// read.
func (c *conn) clearStaleDeadline() {
	if c.staleDeadline.Load() && c.staleDeadline.Swap(false) {
		c.rwc.SetReadDeadline(time.Time{})
	}
}

// replayConn gives Std what was read while looking for the preface.
type replayConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

// release returns the buffers to their pools.
func (c *conn) release() {
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
}

// statusError is a request refused before the handler, answered with its
// status and closed.
type statusError struct {
	code int
	text string
}

func (e statusError) Error() string { return http.StatusText(e.code) + ": " + e.text }

var errTooLarge = errors.New("http1: request headers too large")

// readRequest reads the next request (with httphead's parser or
// net/http's) and applies the checks net/http's server adds to it.
func (c *conn) readRequest() (*http.Request, error) {
	if c.lastMethod == http.MethodPost {
		// RFC 7230 section 3: tolerate a stray CRLF after a POST body.
		peek, _ := c.br.Peek(4)
		n := 0
		for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
			n++
		}
		c.br.Discard(n)
	}
	// The common request is parsed without net/http's per-field
	// allocations; anything else, malformed input included, goes to
	// net/http's parser as it is.
	req, ok := httphead.ReadRequest(c.br, &c.body)
	var hosts []string
	if !ok {
		// http.ReadRequest drops the Host fields, which net/http's server
		// still checks for an absolute-form target: the head is read
		// again from the bytes it consumed (this path is the unusual
		// requests' only).
		consumed := append([]byte(nil), peekBuffered(c.br)...)
		c.r.mu.Lock()
		c.r.capture = &consumed
		c.r.mu.Unlock()
		var err error
		req, err = http.ReadRequest(c.br)
		c.r.mu.Lock()
		c.r.capture = nil
		c.r.mu.Unlock()
		if err != nil {
			if c.r.hitLimit() {
				return nil, errTooLarge
			}
			return nil, err
		}
		if req.URL.Host != "" {
			hosts = hostFields(consumed)
		}
	}
	c.r.setLimit(math.MaxInt64)
	c.lastMethod = req.Method
	if req.ProtoMajor != 1 {
		return nil, statusError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	}
	// http.ReadRequest drops the Host header once it set req.Host (and
	// refused several), so a missing and an empty Host look alike here.
	if req.Host == "" && req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect {
		return nil, statusError{http.StatusBadRequest, "missing required Host header"}
	}
	if req.URL.Host == "" && req.Host != "" && !httpguts.ValidHostHeader(req.Host) {
		return nil, statusError{http.StatusBadRequest, "malformed Host header"}
	}
	if req.URL.Host != "" {
		// An absolute-form target names the host, but HTTP/1.1 still
		// requires a Host field, and a valid one (RFC 9112 section 3.2).
		if len(hosts) == 0 && req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect {
			return nil, statusError{http.StatusBadRequest, "missing required Host header"}
		}
		if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
			return nil, statusError{http.StatusBadRequest, "malformed Host header"}
		}
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, statusError{http.StatusBadRequest, "invalid header name"}
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, statusError{http.StatusBadRequest, "invalid header value"}
			}
		}
	}
	return req, nil
}

// peekBuffered returns the bytes br holds unread.
func peekBuffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

// hostFields returns the values of the Host fields in the request head
// at the start of b, which http.ReadRequest accepted (so it has its end
// and well-formed lines), as net/http's server sees them.
func hostFields(b []byte) []string {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	if _, err := tp.ReadLine(); err != nil {
		return nil
	}
	h, _ := tp.ReadMIMEHeader()
	return h["Host"]
}

// replyError answers a request that could not be read, as net/http does,
// and leaves the connection to be closed.
func (c *conn) replyError(err error) {
	const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	var se statusError
	switch {
	case errors.Is(err, errTooLarge):
		const msg = "431 Request Header Fields Too Large"
		io.WriteString(c.rwc, "HTTP/1.1 "+msg+errorHeaders+msg)
		c.closeWriteAndWait()
	case isUnsupportedTE(err):
		io.WriteString(c.rwc, "HTTP/1.1 501 Not Implemented"+errorHeaders+"Unsupported transfer encoding")
	case isCommonNetReadError(err):
		// The client went away or timed out: nobody to answer.
	case errors.As(err, &se):
		status := fmt.Sprintf("%d %s: %s", se.code, http.StatusText(se.code), se.text)
		io.WriteString(c.rwc, "HTTP/1.1 "+status+errorHeaders+status)
	default:
		const msg = "400 Bad Request"
		io.WriteString(c.rwc, "HTTP/1.1 "+msg+errorHeaders+msg)
	}
}

// isUnsupportedTE reports whether err is net/http's unsupportedTEError
// (unexported, so known by its two messages): a coding other than chunked,
// or more than one Transfer-Encoding field.
func isUnsupportedTE(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unsupported transfer encoding") || strings.HasPrefix(msg, "too many transfer encodings")
}

func isCommonNetReadError(err error) bool {
	if err == io.EOF {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

// closeWriteAndWait half-closes the connection and lingers, so the client
// reads an error reply before the close resets the connection.
func (c *conn) closeWriteAndWait() {
	c.bw.Flush()
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		time.Sleep(rstAvoidanceDelay)
	}
}

// startWatch lists w's request with the server's watcher, which starts
// the disconnect watch once the request has run for WatchAfter.
func (c *conn) startWatch(w *response, bodyDone bool) {
	r := &c.r
	r.mu.Lock()
	r.cur, r.bodyDone, r.wantBG = w, bodyDone, false
	r.pipelined = c.br.Buffered() > 0
	r.mu.Unlock()
	c.s.watch.add(c, w)
}

// onWatch runs when request w is still in flight after WatchAfter: the
// connection is read in the background from then on (once the handler is
// done with the body), so a client that goes away cancels the request.
func (c *conn) onWatch(w *response) {
	r := &c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != w {
		return // w ended meanwhile
	}
	if !r.bodyDone {
		r.wantBG = true
		return
	}
	r.startBackgroundReadLocked()
}

// bodyEOF is called by the request body when the handler read all of it.
func (c *conn) bodyEOF() {
	pipelined := c.br.Buffered() > 0
	r := &c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodyDone, r.pipelined = true, pipelined
	if r.cur != nil && r.wantBG {
		r.startBackgroundReadLocked()
	}
}

// endWatch takes the request off the watcher's list and ends a
// background read.
func (c *conn) endWatch() {
	c.s.watch.remove(c)
	c.r.mu.Lock()
	c.r.cur = nil
	c.r.mu.Unlock()
	c.r.abortPendingRead()
}

// connReader is what the connection's bufio.Reader reads from: it limits
// the header bytes and carries the background read that notices a client
// going away (a byte it reads is kept for the next request).
type connReader struct {
	c      *conn // reads c.sock
	remain int64

	mu      sync.Mutex
	cond    sync.Cond
	inRead  bool
	aborted bool
	hasByte bool
	byteBuf [1]byte
	// cur is the request in flight (nil between requests); bodyDone says
	// its body was read to the end, wantBG that the watch fired before,
	// pipelined that the next request is already buffered (the client is
	// plainly still there).
	cur       *response
	bodyDone  bool
	wantBG    bool
	pipelined bool
	// werr is the first failed write to the connection.
	werr error
	// capture, when non-nil, collects every byte read (see hostFields).
	capture *[]byte
}

func (r *connReader) setLimit(n int64) { r.remain = n }
func (r *connReader) hitLimit() bool   { return r.remain <= 0 }

func (r *connReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	if r.inRead {
		r.mu.Unlock()
		if r.c.hijacked {
			panic("invalid Body.Read call. After hijacked, the original Request must not be used")
		}
		panic("invalid concurrent Body.Read call")
	}
	if r.remain <= 0 {
		r.mu.Unlock()
		return 0, io.EOF
	}
	if len(p) == 0 {
		r.mu.Unlock()
		return 0, nil
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	if r.hasByte {
		p[0] = r.byteBuf[0]
		r.hasByte = false
		r.remain--
		if r.capture != nil {
			*r.capture = append(*r.capture, p[0])
		}
		r.mu.Unlock()
		return 1, nil
	}
	r.inRead = true
	r.mu.Unlock()
	n, err := r.c.sock.Read(p)
	r.mu.Lock()
	r.inRead = false
	if err != nil && r.cur != nil {
		r.cur.cancel()
	}
	r.remain -= int64(n)
	if r.capture != nil {
		*r.capture = append(*r.capture, p[:n]...)
	}
	r.mu.Unlock()
	r.cond.Broadcast()
	return n, err
}

func (r *connReader) startBackgroundReadLocked() {
	if r.pipelined || r.inRead || r.hasByte {
		return
	}
	r.inRead = true
	r.c.staleDeadline.Store(false)
	r.c.rwc.SetReadDeadline(time.Time{})
	go r.backgroundRead()
}

func (r *connReader) backgroundRead() {
	n, err := r.c.sock.Read(r.byteBuf[:])
	r.mu.Lock()
	if n == 1 {
		r.hasByte = true
	}
	var ne net.Error
	if errors.As(err, &ne) && r.aborted && ne.Timeout() {
		// abortPendingRead ended the read: not the client's doing.
	} else if err != nil && r.cur != nil {
		r.cur.cancel()
	}
	r.aborted = false
	r.inRead = false
	r.mu.Unlock()
	r.cond.Broadcast()
}

// abortPendingRead interrupts a read in progress and waits for it to end.
func (r *connReader) abortPendingRead() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.inRead {
		return
	}
	r.aborted = true
	r.c.rwc.SetReadDeadline(aLongTimeAgo)
	for r.inRead {
		r.cond.Wait()
	}
	r.c.rwc.SetReadDeadline(time.Time{})
}

// connWriter is what the connection's bufio.Writer writes to: a failed
// write cancels the request in flight, as it does in net/http.
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) {
	n, err := w.c.sock.Write(p)
	if err != nil {
		r := &w.c.r
		r.mu.Lock()
		r.werr = err
		if r.cur != nil {
			r.cur.cancel()
		}
		r.mu.Unlock()
	}
	return n, err
}

// optionsHandler answers "OPTIONS *" like net/http's server: 200, empty;
// a body over 4 KiB is not read (and the connection closes).
type optionsHandler struct{}

func (optionsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", "0")
	if r.ContentLength != 0 {
		io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 4<<10))
	}
}
