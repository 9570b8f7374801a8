package upstream

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/infergate/infergate/dataplane/rawconn"
)

// hostPool keeps the idle keep-alive connections to one endpoint address
// for the lean HTTP/1.1 client (see lean.go). A connection is in the pool
// only while no request uses it; the request that takes it owns it until
// it puts it back (after a response read to its end) or closes it.
//
// Unlike http.Transport, no goroutine watches an idle connection: get
// checks one before handing it out (a non-blocking peek, see
// rawconn.Conn.Idle), so one the server closed — a keep-alive timeout
// shorter than ours, a restart — is dropped instead of failing a request.
type hostPool struct {
	addr    string
	dialer  *net.Dialer
	maxIdle int
	timeout time.Duration
	// empty is called when the reaper closed the last idle connection, so
	// the pools of endpoints long gone do not pile up.
	empty func(*hostPool)

	mu sync.Mutex
	// idle is ordered by the time each connection was put back, oldest
	// first; get takes the newest, so the oldest ones age out.
	idle   []idleConn
	timer  *time.Timer // reaps expired connections; nil while idle is empty
	closed bool
}

type idleConn struct {
	c     net.Conn
	since time.Time
}

func newHostPool(addr string, dialer *net.Dialer, maxIdle int, timeout time.Duration, empty func(*hostPool)) *hostPool {
	return &hostPool{addr: addr, dialer: dialer, maxIdle: maxIdle, timeout: timeout, empty: empty}
}

// get returns a usable idle connection, or nil when none is left.
func (p *hostPool) get() net.Conn {
	for {
		c := p.take()
		if c == nil {
			return nil
		}
		ic, ok := c.(interface{ Idle() error })
		if !ok || ic.Idle() == nil {
			return c
		}
		c.Close()
	}
}

// take returns the newest idle connection that has not expired, or nil.
func (p *hostPool) take() net.Conn {
	p.mu.Lock()
	n := len(p.idle)
	if n == 0 {
		p.mu.Unlock()
		return nil
	}
	ic := p.idle[n-1]
	p.idle[n-1] = idleConn{}
	p.idle = p.idle[:n-1]
	if time.Since(ic.since) < p.timeout {
		p.mu.Unlock()
		return ic.c
	}
	// The newest connection expired, so every older one did too (the
	// reaper has not run yet).
	expired := append(p.idle, ic)
	p.idle = nil
	p.mu.Unlock()
	closeAll(expired)
	return nil
}

// dial opens a new connection, bounded by ctx and the dial timeout. Its
// reads and writes are raw system calls (see rawconn): every exchange on
// it is one write and a read or two, made by the goroutine serving the
// client.
func (p *hostPool) dial(ctx context.Context) (net.Conn, error) {
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return rawconn.New(c), nil
}

// put returns c for reuse, or closes it when the pool is full or closed.
func (p *hostPool) put(c net.Conn) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, idleConn{c: c, since: time.Now()})
	if p.timer == nil {
		p.timer = time.AfterFunc(p.timeout, p.reap)
	}
	p.mu.Unlock()
}

// reap closes the connections idle longer than the timeout and rearms for
// the oldest one left.
func (p *hostPool) reap() {
	p.mu.Lock()
	now := time.Now()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].since) >= p.timeout {
		i++
	}
	expired := make([]idleConn, i)
	copy(expired, p.idle[:i])
	n := copy(p.idle, p.idle[i:])
	clear(p.idle[n:])
	p.idle = p.idle[:n]
	if n > 0 && !p.closed {
		p.timer.Reset(p.timeout - now.Sub(p.idle[0].since))
	} else {
		p.timer = nil
	}
	p.mu.Unlock()
	if n == 0 && p.empty != nil {
		p.empty(p)
	}
	closeAll(expired)
}

// close closes the idle connections; connections put back later are
// closed too.
func (p *hostPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	closeAll(idle)
}

func closeAll(conns []idleConn) {
	for _, ic := range conns {
		ic.c.Close()
	}
}
