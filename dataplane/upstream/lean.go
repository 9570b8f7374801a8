package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/dataplane/httphead"
)

// The lean HTTP/1.1 client does a whole exchange on the goroutine serving
// the client: write the request, read the response head, copy the body.
// http.Transport instead hands every request to two goroutines of its
// connection (writeLoop, readLoop) and back, and each hop may have to wake
// a parked thread — on a proxy doing little else per request those hops
// are a large share of its CPU. Only the connection pool and cancellation
// are its own; the wire format is net/http's: httphead parses the common
// responses as http.ReadResponse would, which parses the rest (chunked
// bodies and trailers included), and writeHead writes the request head
// the way (*http.Request).Write does.
//
// valyala/fasthttp's HostClient was the other candidate, but it has no
// per-request cancellation (only timeouts), and an inference request must
// abort the moment its client goes away so the model server stops
// generating; it would also need its own request and response types
// converted to and from net/http's on every request.
//
// It serves requests whose body is absent or replayable (GetBody set: the
// proxy's buffered copy), which is every JSON request; streamed uploads
// and protocol upgrades go to httputil.ReverseProxy, whose transport
// writes a body concurrently with reading an early response.

// aLongTimeAgo is a deadline in the past: setting it aborts blocked reads
// and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// maxInformational bounds the 1xx responses before the final one.
const maxInformational = 5

var errProtocolSwitch = errors.New("upstream switched protocols without being asked to")

// leanProxy forwards to one endpoint over the lean client.
type leanProxy struct {
	u      *Upstream
	addr   string
	pool   *hostPool
	served []string
	// std serves what the lean client does not (see leanable).
	std http.Handler
}

// leanable reports whether the lean client can carry r.
func leanable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false // streamed upload
	}
	if r.ContentLength < 0 {
		return false
	}
	_, upgrade := r.Header["Upgrade"]
	_, expect := r.Header["Expect"]
	return !upgrade && !expect
}

// ServeHTTP implements http.Handler with the semantics of Upstream.Proxy.
func (p *leanProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !leanable(r) {
		p.std.ServeHTTP(w, r)
		return
	}
	var x leanExchange // on the stack: nothing keeps it past the request
	if err := p.roundTrip(w, r, &x); err != nil {
		p.u.fail(w, r, p.addr, p.served, err)
		return
	}
	p.respond(w, r, &x)
}

// leanExchange is one request on one connection.
type leanExchange struct {
	c    net.Conn
	br   *bufio.Reader
	resp *http.Response
	// stop unregisters the cancel hook; false means it ran (or is
	// running), so the connection's deadline is in the past.
	stop func() bool
}

// roundTrip sends r and reads the response head into x, on an idle
// connection of the pool when one is usable, else on a new one.
//
// A request is sent again — once, on a new connection — only when the
// first attempt went out on a reused connection and either nothing of it
// was written, or nothing of a response came back and the request is
// replayable (idempotent, or with an Idempotency-Key: see replayable), as
// http.Transport decides. A written POST is never repeated: a server that
// closes the connection after reading a request cannot be told from one
// that closed it idle just as the request went out, and repeating a
// generation bills it twice. The idle check before each reuse (see
// hostPool.get) makes the second case rare. A request that never reached
// the server (connect failed, or nothing written on a new connection)
// fails with a *NotSentError, so the caller may send it to another
// endpoint.
func (p *leanProxy) roundTrip(w http.ResponseWriter, r *http.Request, x *leanExchange) error {
	ctx := r.Context()
	body := r.Body
	for try := 0; ; try++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var c net.Conn
		if try == 0 {
			c = p.pool.get()
		}
		reused := c != nil
		if !reused {
			var err error
			if c, err = p.pool.dial(ctx); err != nil {
				if cerr := ctx.Err(); cerr != nil {
					return cerr
				}
				return &NotSentError{Err: err}
			}
		}
		// Aborts a blocked write or read (a model server may think for
		// tens of seconds before the first byte) when the client goes away
		// or a timeout fires; the server sees the connection close.
		stop := afterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
		*x = leanExchange{c: c, stop: stop}
		progress, err := p.send(w, x, r, body)
		if err == nil {
			return nil
		}
		p.close(x)
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		var reqErr *RequestError
		if errors.As(err, &reqErr) {
			return err // the same on any connection
		}
		retry := reused && try == 0 && (progress == nothingWritten || progress == nothingRead && replayable(r))
		if !retry {
			if progress == nothingWritten {
				return &NotSentError{Err: err}
			}
			return err
		}
		p.u.logger.Debug("retrying on a fresh upstream connection", "request_id", RequestID(r), "endpoint", p.addr, "err", err)
		if r.GetBody != nil {
			if body, err = r.GetBody(); err != nil {
				return err
			}
		}
	}
}

// progress is how far an exchange got before it failed.
type progress int

const (
	nothingWritten progress = iota // no byte of the request left
	nothingRead                    // the request (or part) left, no response byte came
	responded                      // a response started
)

// replayable reports whether r may be sent again after it was written:
// an idempotent method, or an Idempotency-Key (the IETF draft's, or its
// X- form) — net/http's rule — with a body that can be sent again.
func replayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, ok := r.Header["Idempotency-Key"]
	if !ok {
		_, ok = r.Header["X-Idempotency-Key"]
	}
	return ok
}

// NotSentError is an attempt that failed before any byte of the request
// reached the endpoint (the connection was refused or reset, or timed
// out, before a write): the endpoint cannot have processed it, so it may
// go to another endpoint whatever its method.
type NotSentError struct{ Err error }

func (e *NotSentError) Error() string { return "request not sent: " + e.Err.Error() }

func (e *NotSentError) Unwrap() error { return e.Err }

// NotSent reports whether err says the request never reached the
// endpoint.
func NotSent(err error) bool {
	var ns *NotSentError
	return errors.As(err, &ns)
}

// send writes the request and reads the response head (passing on 1xx
// responses), reporting how far it got.
func (p *leanProxy) send(w http.ResponseWriter, x *leanExchange, r *http.Request, body io.Reader) (progress, error) {
	if written, err := p.u.writeRequest(x.c, r, body, p.addr); err != nil {
		if written == 0 {
			return nothingWritten, err
		}
		return nothingRead, err
	}
	x.br = p.u.getReader(x.c)
	if _, err := x.br.Peek(1); err != nil {
		return nothingRead, err
	}
	for n := 0; ; n++ {
		// The common response is parsed without net/http's per-field
		// allocations; anything else goes to net/http's parser as it is.
		resp, ok := httphead.ReadResponse(x.br, r)
		if !ok {
			var err error
			if resp, err = http.ReadResponse(x.br, r); err != nil {
				return responded, err
			}
		}
		code := resp.StatusCode
		if code >= 200 {
			x.resp = resp
			return responded, nil
		}
		if code == http.StatusSwitchingProtocols {
			return responded, errProtocolSwitch
		}
		if n == maxInformational {
			return responded, errors.New("upstream sent too many 1xx responses")
		}
		// 103 Early Hints and the like pass to the client, 100 Continue
		// too (as httputil.ReverseProxy passes every interim answer),
		// though nothing here asked for it: a client must take 1xx
		// answers it did not expect.
		writeInformational(w, resp)
	}
}

// writeRequest writes the request head and body, in one write when they
// fit the buffer together, and returns how many bytes left.
func (u *Upstream) writeRequest(c net.Conn, r *http.Request, body io.Reader, addr string) (written int64, err error) {
	n := r.ContentLength
	if body == nil || body == http.NoBody {
		n = 0
	}
	cw := countingWriter{w: c}
	bw := u.writers.Get().(*bufio.Writer)
	bw.Reset(&cw)
	defer func() {
		bw.Reset(nil)
		u.writers.Put(bw)
	}()
	if err := writeHead(bw, r, addr, n); err != nil {
		return cw.n, err
	}
	if n == 0 {
		return cw.n, bw.Flush()
	}
	if n <= int64(bw.Available()) {
		if err := copyBody(bw, body, n); err != nil {
			return cw.n, err
		}
		return cw.n, bw.Flush()
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	// A large body goes out in one write of its own: the proxy's bodies
	// write themselves (io.WriterTo) straight from their buffer.
	err = copyBody(&cw, body, n)
	return cw.n, err
}

// countingWriter counts the bytes the connection took.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// copyBody writes exactly n bytes of body to w.
func copyBody(w io.Writer, body io.Reader, n int64) error {
	var (
		m   int64
		err error
	)
	if wt, ok := body.(sizedWriterTo); ok && int64(wt.Len()) == n {
		m, err = wt.WriteTo(w)
	} else {
		m, err = io.Copy(w, io.LimitReader(body, n))
	}
	if err == nil && m != n {
		err = errors.New("upstream: request body is " + strconv.FormatInt(m, 10) + " bytes, Content-Length " + strconv.FormatInt(n, 10))
	}
	return err
}

// respond copies the response to w and keeps the connection when the
// exchange ended cleanly.
func (p *leanProxy) respond(w http.ResponseWriter, r *http.Request, x *leanExchange) {
	resp := x.resp
	removeHopHeaders(resp.Header)
	dropEcho(resp.Header, r)
	h := w.Header()
	for k, vv := range resp.Header {
		if k == ServedHeader {
			continue // ours, below: an upstream cannot name another endpoint
		}
		// resp is this exchange's alone, so its value slices (capped by
		// the parser: an append copies) move over without a copy.
		if old, ok := h[k]; ok {
			vv = append(old, vv...)
		}
		h[k] = vv
	}
	if len(h[ServedHeader]) == 0 {
		// Shared, as the stdlib path shares it: its capacity is its
		// length, so an append elsewhere copies it.
		h[ServedHeader] = p.served
	} else {
		h[ServedHeader] = append(h[ServedHeader], p.served...)
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)

	// Events and bodies of unknown length reach the client as they come;
	// a body of known length is written in one go at the end.
	stream := resp.ContentLength < 0 || isEventStream(resp.Header)
	if err := p.copyResponse(w, resp.Body, stream); err != nil {
		p.close(x)
		ctx := r.Context()
		if s, ok := w.(CutSink); ok {
			s.UpstreamCut(err) // the caller logs it, with what it knows
		} else if ctx.Err() == nil {
			p.u.logger.Warn("upstream response cut short", "request_id", RequestID(r), "endpoint", p.addr, "err", err)
		}
		if ctx.Value(http.ServerContextKey) != nil {
			// Only an aborted connection tells the client the response is
			// incomplete (net/http recovers this panic).
			panic(http.ErrAbortHandler)
		}
		return
	}
	p.release(x)

	if len(resp.Trailer) > 0 {
		// Chunked encoding, so the trailers can follow the body.
		_ = http.NewResponseController(w).Flush()
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			if len(vv) > 0 { // announced but not sent (a HEAD's): none
				h[k] = append(h[k], vv...)
			}
		}
		return
	}
	for k, vv := range resp.Trailer {
		for _, v := range vv {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
}

// copyResponse copies the body, flushing after every read when stream.
func (p *leanProxy) copyResponse(w http.ResponseWriter, body io.Reader, stream bool) error {
	bp := p.u.bufs.get()
	defer p.u.bufs.put(bp)
	buf := *bp
	var fl http.Flusher
	if stream {
		fl, _ = w.(http.Flusher)
	}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if fl != nil {
				fl.Flush()
			} else if stream {
				_ = http.NewResponseController(w).Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// release puts the connection back when the response allows keep-alive
// and nothing is left unread; otherwise it closes it.
func (p *leanProxy) release(x *leanExchange) {
	ok := x.stop() && !x.resp.Close && x.br.Buffered() == 0
	x.resp.Body.Close()
	p.u.putReader(x.br)
	x.br = nil
	if ok {
		p.pool.put(x.c)
		return
	}
	x.c.Close()
}

// close ends the exchange without reuse.
func (p *leanProxy) close(x *leanExchange) {
	x.stop()
	x.c.Close()
	if x.br != nil {
		p.u.putReader(x.br)
		x.br = nil
	}
}

// writeInformational passes a 1xx response to the client, its headers
// only on it: w's headers are the final response's.
func writeInformational(w http.ResponseWriter, resp *http.Response) {
	h := w.Header()
	prev := make(map[string][]string, len(resp.Header))
	for k, vv := range resp.Header {
		prev[k] = h[k]
		h[k] = vv
	}
	w.WriteHeader(resp.StatusCode)
	for k, vv := range prev {
		if vv == nil {
			delete(h, k)
		} else {
			h[k] = vv
		}
	}
}

func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	mt, _, _ := strings.Cut(ct[0], ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

// afterFuncer is a context with an AfterFunc of its own, such as the
// lean HTTP/1 server's request contexts (see http1), which hook a
// cancellation for less than context.AfterFunc does on other contexts.
type afterFuncer interface {
	AfterFunc(func()) func() bool
}

// afterFunc is context.AfterFunc, through ctx's own AfterFunc when it has
// one (context.AfterFunc would use it too, but only after allocating a
// context of its own to cancel).
func afterFunc(ctx context.Context, f func()) (stop func() bool) {
	if a, ok := ctx.(afterFuncer); ok {
		return a.AfterFunc(f)
	}
	return context.AfterFunc(ctx, f)
}

// ctxErr prefers the context's error: it says why a read or write failed
// after the cancel hook set a past deadline.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// getReader returns a pooled response reader on c: a connection needs one
// only while a request uses it.
func (u *Upstream) getReader(c net.Conn) *bufio.Reader {
	br := u.readers.Get().(*bufio.Reader)
	br.Reset(c)
	return br
}

func (u *Upstream) putReader(br *bufio.Reader) {
	br.Reset(nil)
	u.readers.Put(br)
}
