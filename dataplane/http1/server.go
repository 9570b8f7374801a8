// Package http1 is the proxy's lean HTTP/1.1 server. net/http's server
// costs a goroutine hand-off and several allocations per request that a
// proxy does not need: a background read goroutine started for every
// request to notice a client going away, a copy of the response headers,
// and a two-stage writer. This server reads requests with net/http's own
// parser (http.ReadRequest, with net/http's limits and checks) on one
// goroutine per connection, runs the handler on it, and writes the
// response straight into the connection's buffer. A client that goes away
// is watched for only once a request has run for a while (WatchAfter), so
// fast requests never pay for it.
//
// Connections that speak HTTP/2 — TLS connections that negotiate h2 by
// ALPN and cleartext connections that open with the HTTP/2 preface — are
// handed to net/http's server (Server.Std), which serves them exactly as
// it would on its own.
package http1

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Mode names the server for HTTP/1.1 connections.
type Mode string

const (
	// Lean is this package's server.
	Lean Mode = "lean"
	// Stdlib is net/http's server.
	Stdlib Mode = "stdlib"
)

// ParseMode parses a --http1-server value ("" is the default, Lean).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return Lean, nil
	case Lean, Stdlib:
		return m, nil
	}
	return "", fmt.Errorf("unknown HTTP/1 server %q (want %q or %q)", s, Lean, Stdlib)
}

// DefaultWatchAfter is how long a request runs before its connection is
// watched for the client going away. Requests that end sooner (nearly all
// JSON requests through a proxy) never start the watch; a client leaving a
// stream, a wait queue or a long prefill is noticed this much later at
// most, which is nothing next to the time such requests take.
const DefaultWatchAfter = 10 * time.Millisecond

// maxPostHandlerReadBytes is how much of a request body the handler left
// unread is read and discarded to keep the connection (net/http's value).
const maxPostHandlerReadBytes = 256 << 10

// Server serves HTTP/1.1 on one listener. Set the fields before Serve.
type Server struct {
	// Std is the net/http server this one stands in for. Its Handler
	// (required), TLSConfig, ReadHeaderTimeout, IdleTimeout and
	// MaxHeaderBytes apply to the HTTP/1 connections too (its other
	// settings do not, not even ReadTimeout as a fallback); it serves the
	// connections that speak HTTP/2 (its Protocols must allow them, and
	// for TLS its TLSConfig must offer "h2" and "http/1.1" by ALPN); and it
	// is the http.ServerContextKey value of every request, as net/http
	// would set it.
	//
	// A TLSConfig (as it is when Serve is called) makes the listener serve
	// TLS. ReadHeaderTimeout bounds reading a request's headers (and the
	// TLS handshake), IdleTimeout the wait for the next request on a kept
	// connection; zero means none. MaxHeaderBytes limits the request
	// headers (default http.DefaultMaxHeaderBytes); larger get 431.
	Std *http.Server
	// WatchAfter is how long a request runs before the connection is
	// watched for the client going away (default DefaultWatchAfter).
	WatchAfter time.Duration
	// Logger receives what net/http would log to ErrorLog (default: discard).
	Logger *slog.Logger

	// tlsConfig is Std's as Serve found it: serving HTTP/2 makes
	// net/http give a server without one a TLSConfig of its own.
	tlsConfig *tls.Config

	watch watcher

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*conn]struct{}
	h2ln     *handoffListener
	shutdown atomic.Bool
	served   sync.WaitGroup
}

// Serve accepts connections on ln until Shutdown or Close and always
// returns a non-nil error: http.ErrServerClosed after those.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.ln != nil || s.shutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.conns = map[*conn]struct{}{}
	s.h2ln = newHandoffListener(ln.Addr())
	s.tlsConfig = s.Std.TLSConfig
	s.watch.after = s.watchAfter()
	s.mu.Unlock()
	// Std serves the connections handed to it until Shutdown or Close
	// (Std's, which closes h2ln).
	go s.Std.Serve(s.h2ln)
	base := context.WithValue(context.Background(), http.ServerContextKey, s.Std)
	var delay time.Duration
	for {
		rw, err := ln.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return http.ErrServerClosed
			}
			// Like net/http: back off on temporary errors (out of file
			// descriptors), give up on anything else.
			var ne interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Debug("http1: accept error; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(rw, base)
		if c == nil {
			rw.Close()
			return http.ErrServerClosed
		}
		go c.serve()
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) maxHeaderBytes() int64 {
	if s.Std.MaxHeaderBytes > 0 {
		return int64(s.Std.MaxHeaderBytes)
	}
	return http.DefaultMaxHeaderBytes
}

func (s *Server) watchAfter() time.Duration {
	if s.WatchAfter > 0 {
		return s.WatchAfter
	}
	return DefaultWatchAfter
}

// track registers c; false once the server is shutting down.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.served.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.served.Done()
}

// handoff gives a connection that speaks HTTP/2 to Std.
func (s *Server) handoff(c net.Conn) {
	if !s.h2ln.push(c) {
		c.Close()
	}
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish and closes their connections after, like
// http.Server.Shutdown; the HTTP/2 connections are shut down by Std. It
// returns ctx's error if ctx ends first (connections may remain: Close
// them).
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	h2err := make(chan error, 1)
	go func() { h2err <- s.Std.Shutdown(ctx) }()
	done := make(chan struct{})
	go func() {
		s.served.Wait()
		close(done)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.closeIdle()
		select {
		case <-done:
			return <-h2err
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	s.stopAccepting()
	err := s.Std.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.raw.Close()
	}
	s.mu.Unlock()
	return err
}

func (s *Server) stopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Swap(true) {
		return
	}
	if s.ln != nil {
		s.ln.Close()
		s.h2ln.Close()
	}
}

// closeIdle closes the connections waiting for a request; a connection
// busy with one sees the shutdown when the request is done.
func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		switch c.state.Load() {
		case stateIdle:
			c.raw.Close()
		case stateNew:
			if time.Since(c.created) > newConnGrace {
				c.raw.Close()
			}
		}
	}
}

// handoffListener is the listener Std serves: it returns the connections
// handed to it.
type handoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
