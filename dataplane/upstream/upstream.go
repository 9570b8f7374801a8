// Package upstream forwards requests to model servers and Services. It owns
// the shared upstream clients and builds one handler per endpoint, so the
// destination needs no per-request context plumbing.
//
// Plain HTTP/1.1 endpoints are served by default by a lean client (lean.go)
// that does each exchange on the calling goroutine with net/http's wire
// code and a connection pool of its own (pool.go); see lean.go for why it
// exists and why not fasthttp. HTTP1Stdlib selects httputil.ReverseProxy
// over a tuned http.Transport instead, which also serves cleartext HTTP/2
// (h2c) endpoints and the requests the lean client leaves to it (streamed
// uploads, protocol upgrades).
package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/infergate/infergate/dataplane/openai"
)

// Headers the gateway honours on requests and never forwards (canonical
// form, so deleting them does not allocate).
var strippedHeaders = []string{
	"X-Gateway-Inference-Objective",
	"X-Gateway-Inference-Fairness-Id",
	"X-Gateway-Model-Name-Rewrite",
}

// StripGatewayHeaders removes the request headers only the gateway reads.
func StripGatewayHeaders(h http.Header) {
	for _, k := range strippedHeaders {
		delete(h, k)
	}
}

// ServedHeader names the endpoint that served a response.
const ServedHeader = "X-Gateway-Destination-Endpoint-Served"

// Options tune the transports. Zero values take the defaults.
type Options struct {
	// DialTimeout bounds connecting to an endpoint (default 5 s).
	DialTimeout time.Duration
	// MaxIdleConnsPerHost kept for reuse (default 1024: inference traffic is
	// many long, concurrent requests to few hosts).
	MaxIdleConnsPerHost int
	// IdleConnTimeout (default 90 s).
	IdleConnTimeout time.Duration
	// HTTP1 selects the client for plain HTTP/1.1 endpoints (default
	// HTTP1Lean).
	HTTP1 HTTP1Mode
}

// HTTP1Mode names a client for plain HTTP/1.1 endpoints.
type HTTP1Mode string

const (
	// HTTP1Lean is the lean client of lean.go.
	HTTP1Lean HTTP1Mode = "lean"
	// HTTP1Stdlib is httputil.ReverseProxy over http.Transport.
	HTTP1Stdlib HTTP1Mode = "stdlib"
)

// ParseHTTP1Mode parses a --upstream-http1 value ("" is the default).
func ParseHTTP1Mode(s string) (HTTP1Mode, error) {
	switch m := HTTP1Mode(s); m {
	case "":
		return HTTP1Lean, nil
	case HTTP1Lean, HTTP1Stdlib:
		return m, nil
	}
	return "", fmt.Errorf("unknown HTTP/1 upstream client %q (want %q or %q)", s, HTTP1Lean, HTTP1Stdlib)
}

// Upstream holds the clients shared by every endpoint proxy.
type Upstream struct {
	logger *slog.Logger
	opts   Options
	http1  *http.Transport
	h2c    *http.Transport
	bufs   bufferPool
	// base builds a transport with the shared tuning.
	base func() *http.Transport

	// The lean client's: a dialer, buffers lent per request, and the idle
	// connections per endpoint address, kept across config versions.
	dialer           *net.Dialer
	writers, readers sync.Pool
	mu               sync.Mutex
	pools            map[string]*hostPool
	closed           bool
	// tls holds one transport per backend TLS setting (see ProxyTLS).
	tls map[string]*http.Transport
}

// New returns an Upstream with tuned transports.
func New(logger *slog.Logger, opts Options) *Upstream {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.MaxIdleConnsPerHost <= 0 {
		opts.MaxIdleConnsPerHost = 1024
	}
	if opts.IdleConnTimeout <= 0 {
		opts.IdleConnTimeout = 90 * time.Second
	}
	if opts.HTTP1 == "" {
		opts.HTTP1 = HTTP1Lean
	}
	netDialer := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	dialer := dialer{netDialer}
	base := func() *http.Transport {
		return &http.Transport{
			DialContext:           dialer.DialContext,
			MaxIdleConnsPerHost:   opts.MaxIdleConnsPerHost,
			IdleConnTimeout:       opts.IdleConnTimeout,
			ExpectContinueTimeout: time.Second,
			// Pass the client's Accept-Encoding through untouched instead
			// of negotiating gzip on its behalf.
			DisableCompression: true,
			// Prompts of hundreds of KB go out in fewer syscalls.
			WriteBufferSize: 64 << 10,
			ReadBufferSize:  32 << 10,
		}
	}
	u := &Upstream{logger: logger, opts: opts, dialer: netDialer, pools: map[string]*hostPool{}, base: base, tls: map[string]*http.Transport{}}
	h1 := base()
	h1.Protocols = new(http.Protocols)
	h1.Protocols.SetHTTP1(true)
	h2 := base()
	h2.Protocols = new(http.Protocols)
	// Prior-knowledge HTTP/2 over cleartext for http:// URLs.
	h2.Protocols.SetUnencryptedHTTP2(true)
	u.http1, u.h2c = h1, h2
	// Prompts of hundreds of KB go out in few syscalls (see writeRequest).
	u.writers.New = func() any { return bufio.NewWriterSize(nil, 64<<10) }
	u.readers.New = func() any { return bufio.NewReaderSize(nil, 32<<10) }
	return u
}

// Close drops idle upstream connections.
func (u *Upstream) Close() {
	u.http1.CloseIdleConnections()
	u.h2c.CloseIdleConnections()
	u.mu.Lock()
	u.closed = true
	pools := u.pools
	u.pools = map[string]*hostPool{}
	for _, t := range u.tls {
		t.CloseIdleConnections()
	}
	u.mu.Unlock()
	for _, p := range pools {
		p.close()
	}
}

// poolFor returns the lean client's pool for addr.
func (u *Upstream) poolFor(addr string) *hostPool {
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.pools[addr]
	if p == nil {
		p = newHostPool(addr, u.dialer, u.opts.MaxIdleConnsPerHost, u.opts.IdleConnTimeout, u.forgetPool)
		if u.closed {
			p.close()
		}
		u.pools[addr] = p
	}
	return p
}

// Proxy returns a handler forwarding to addr ("ip:port"). served is the
// shared value of the ServedHeader response header. The handler returns
// after the response body has been fully copied (or the exchange failed),
// which is when the caller releases the endpoint. Connect failures and bad
// upstream responses go to a FailureSink, else become 502 OpenAI errors; a
// failure after the response started aborts the client connection, as
// only that tells the client the stream is incomplete.
func (u *Upstream) Proxy(addr string, h2c bool, served []string) http.Handler {
	t, scheme := u.http1, "http"
	if h2c {
		t = u.h2c
	}
	std := u.reverseProxy(addr, t, scheme, served)
	if h2c || u.opts.HTTP1 == HTTP1Stdlib {
		return std
	}
	return &leanProxy{u: u, addr: addr, pool: u.poolFor(addr), served: served, std: std}
}

// forgetPool drops p, which has no idle connection left: a handler still
// holding it keeps working, and the next Proxy for its address starts a
// new pool.
func (u *Upstream) forgetPool(p *hostPool) {
	u.mu.Lock()
	if u.pools[p.addr] == p {
		delete(u.pools, p.addr)
	}
	u.mu.Unlock()
}

// reverseProxy returns the net/http proxy to addr over t.
func (u *Upstream) reverseProxy(addr string, t *http.Transport, scheme string, served []string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Transport:  t,
		BufferPool: &u.bufs,
		// FlushInterval stays 0: ReverseProxy itself flushes every write
		// of SSE (text/event-stream) and unknown-length (chunked)
		// responses, so events reach the client as the model server
		// produces them. A response with a known length is written in one
		// go instead: -1 here would also start a timer per request that
		// flushes the headers in a write of their own.
		FlushInterval: 0,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = scheme
			pr.Out.URL.Host = addr
			pr.SetXForwarded()
			if pr.In.GetBody != nil {
				// The caller owns this body and keeps it readable (and
				// replayable through GetBody) however late the transport
				// reads it, so ReverseProxy's guard against reads after
				// ServeHTTP returns is not needed. Without the guard the
				// transport can see an in-memory reader (see inMemory).
				pr.Out.Body = inMemory(pr.In.Body)
			}
			StripGatewayHeaders(pr.Out.Header)
		},
		ModifyResponse: func(resp *http.Response) error {
			dropEcho(resp.Header, resp.Request)
			resp.Header[ServedHeader] = served
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			u.fail(w, r, addr, served, classify(err))
		},
		ErrorLog: slog.NewLogLogger(u.logger.Handler(), slog.LevelWarn),
	}
}

// dropEcho removes from an upstream response the request id the proxy
// already put on the client's response (EnsureRequestID sets it on the
// request it forwards and on the response alike): servers that echo
// X-Request-Id — vLLM does — would otherwise make it appear twice.
func dropEcho(h http.Header, out *http.Request) {
	if out != nil && len(out.Header[RequestIDHeader]) > 0 {
		delete(h, RequestIDHeader)
	}
}

// inMemoryLimit is the body size up to which inMemory copies a body.
const inMemoryLimit = 64 << 10

// inMemory returns a small buffered body (one that knows its length) as a
// copy behind a bytes.Reader: http.Transport recognises that as in memory
// and writes the request head and body in one syscall instead of flushing
// the head first, and being a copy it stays valid however late the
// transport reads it. A larger one, where one more syscall does not
// matter, and any other body go as they are. The lean client needs no
// copy: it writes a body itself, on the caller's goroutine.
func inMemory(body io.ReadCloser) io.ReadCloser {
	wt, ok := body.(sizedWriterTo)
	if !ok || wt.Len() > inMemoryLimit {
		return body
	}
	b := make([]byte, wt.Len())
	if _, err := io.ReadFull(body, b); err != nil {
		return body // closed under us: the transport reads the same error
	}
	return io.NopCloser(bytes.NewReader(b))
}

// fail handles an exchange with addr that failed before the response
// started.
func (u *Upstream) fail(w http.ResponseWriter, r *http.Request, addr string, served []string, err error) {
	if s, ok := w.(FailureSink); ok && s.UpstreamFailed(err) {
		// The caller decides: retry elsewhere, time out, or fail.
		u.logger.Debug("upstream attempt failed", "request_id", RequestID(r), "endpoint", addr, "path", r.URL.Path, "err", err)
		return
	}
	if r.Context().Err() != nil {
		// The client went away; nobody is left to answer.
		u.logger.Debug("client canceled", "request_id", RequestID(r), "endpoint", addr, "path", r.URL.Path)
		return
	}
	var re *RequestError
	if errors.As(err, &re) {
		u.logger.Info("request cannot be forwarded", "request_id", RequestID(r), "endpoint", addr, "path", r.URL.Path, "err", err)
		openai.WriteError(w, http.StatusBadRequest, openai.TypeInvalidRequest, "invalid_request", re.Error())
		return
	}
	u.logger.Warn("upstream failed", "request_id", RequestID(r), "endpoint", addr, "path", r.URL.Path, "err", err)
	w.Header()[ServedHeader] = served
	msg := "upstream " + addr + " failed"
	if IsTimeout(err) {
		msg = "upstream " + addr + " timed out"
	}
	openai.WriteError(w, http.StatusBadGateway, openai.TypeServer, "upstream_error", msg)
}

// classify gives http.Transport's errors the lean client's types: a
// failed dial never reached the endpoint (*NotSentError), a header net/http
// refuses to write is the request's fault (*RequestError). Transport's own
// "nothing written" case on a fresh connection is not exported, so it
// stays a plain error there.
func classify(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return &NotSentError{Err: err}
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "net/http: invalid header field") || strings.HasPrefix(msg, "http: invalid Host header") {
		return &RequestError{Err: err}
	}
	return err
}

// IsTimeout reports whether err is a deadline that passed: the context's,
// or a connection's (a read or write timeout).
func IsTimeout(err error) bool {
	if err == nil {
		return false // errors.As would allocate its target for nothing
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// FailureSink is implemented by a ResponseWriter that handles upstream
// failures itself (retries, timeouts). UpstreamFailed is called instead of
// writing a 502 when nothing has been written yet; it returns false to let
// the proxy write its own error.
type FailureSink interface {
	UpstreamFailed(err error) bool
}

// CutSink is implemented by a ResponseWriter that wants to know why a
// response that had started was cut short: UpstreamCut is called with
// the upstream's error just before the client connection is aborted.
type CutSink interface {
	UpstreamCut(err error)
}

// Transport returns the shared transport for HTTP/1.1 or cleartext HTTP/2
// upstreams (for requests the caller sends itself, such as mirrors).
func (u *Upstream) Transport(h2c bool) http.RoundTripper {
	if h2c {
		return u.h2c
	}
	return u.http1
}

// bufferPool recycles the 32 KB copy buffers of ReverseProxy and the lean
// client, which would otherwise allocate one per request.
type bufferPool struct{ p sync.Pool }

// get and put lend a buffer without allocating; Get and Put are
// httputil.BufferPool's, whose Put has to box the slice it is given.
func (b *bufferPool) get() *[]byte {
	if v := b.p.Get(); v != nil {
		return v.(*[]byte)
	}
	buf := make([]byte, 32<<10)
	return &buf
}

func (b *bufferPool) put(buf *[]byte) { b.p.Put(buf) }

func (b *bufferPool) Get() []byte { return *b.get() }

func (b *bufferPool) Put(buf []byte) { b.put(&buf) }
