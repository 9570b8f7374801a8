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

// roundTrip sends r and reads the response head into x. A reused connection the
// server had closed fails before any byte of a response arrives; that
// attempt is repeated once, on a new connection. (A server that closes a
// connection on a request it got without answering looks the same, and
// gets the request once more.)
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
				return ctxErr(ctx, err)
			}
		}
		// Aborts a blocked write or read (a model server may think for
		// tens of seconds before the first byte) when the client goes away
		// or a timeout fires; the server sees the connection close.
		stop := afterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
		*x = leanExchange{c: c, stop: stop}
		stale, err := p.send(w, x, r, body, reused)
		if err == nil {
			return nil
		}
		p.close(x)
		if ctx.Err() == nil && stale && try == 0 {
			p.u.logger.Debug("retrying on a fresh upstream connection", "request_id", RequestID(r), "endpoint", p.addr, "err", err)
			if r.GetBody != nil {
				if body, err = r.GetBody(); err != nil {
					return err
				}
			}
			continue
		}
		return ctxErr(ctx, err)
	}
}

// send writes the request and reads the response head (passing on 1xx
// responses). stale reports a failure that a server closing an idle
// connection explains: on a reused connection, nothing of a response read.
func (p *leanProxy) send(w http.ResponseWriter, x *leanExchange, r *http.Request, body io.Reader, reused bool) (stale bool, err error) {
	if err := p.u.writeRequest(x.c, r, body, p.addr); err != nil {
		// The server cannot have acted on a request it did not get whole.
		return reused && connFailed(err), err
	}
	x.br = p.u.getReader(x.c)
	if _, err := x.br.Peek(1); err != nil {
		return reused && connFailed(err), err
	}
	for n := 0; ; n++ {
		// The common response is parsed without net/http's per-field
		// allocations; anything else goes to net/http's parser as it is.
		resp, ok := httphead.ReadResponse(x.br, r)
		if !ok {
			var err error
			if resp, err = http.ReadResponse(x.br, r); err != nil {
				return false, err
			}
		}
		code := resp.StatusCode
		if code >= 200 {
			x.resp = resp
			return false, nil
		}
		if code == http.StatusSwitchingProtocols {
			return false, errProtocolSwitch
		}
		if n == maxInformational {
			return false, errors.New("upstream sent too many 1xx responses")
		}
		if code != http.StatusContinue {
			// 103 Early Hints and the like. 100 Continue is not: nothing
			// here asked for it (the client's was answered when the proxy
			// read its body).
			writeInformational(w, resp)
		}
	}
}

// connFailed reports an error of the connection itself (closed or reset
// by the server), not of the request.
func connFailed(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// writeRequest writes the request head and body, in one write when they
// fit the buffer together.
func (u *Upstream) writeRequest(c net.Conn, r *http.Request, body io.Reader, addr string) error {
	n := r.ContentLength
	if body == nil || body == http.NoBody {
		n = 0
	}
	bw := u.writers.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() {
		bw.Reset(nil)
		u.writers.Put(bw)
	}()
	if err := writeHead(bw, r, addr, n); err != nil {
		return err
	}
	if n == 0 {
		return bw.Flush()
	}
	if n <= int64(bw.Available()) {
		if err := copyBody(bw, body, n); err != nil {
			return err
		}
		return bw.Flush()
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	// A large body goes out in one write of its own: the proxy's bodies
	// write themselves (io.WriterTo) straight from their buffer.
	return copyBody(c, body, n)
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
		if ctx.Err() == nil {
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
			h[k] = append(h[k], vv...)
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
