// Package rawconn reads and writes TCP sockets with raw system calls.
//
// A read or write on a net.Conn goes through syscall.Read/Write, which
// tell the Go scheduler that the thread may block (entersyscall and
// exitsyscall). On a socket that cannot block — Go's sockets are
// non-blocking, and the netpoller parks the goroutine when there is
// nothing to read — that bookkeeping buys nothing, and it costs a thread
// wake-up whenever the process was idle before: the first system call
// after all Ps went idle wakes sysmon, the runtime's monitor thread,
// which then polls every 20 µs for a millisecond. A proxy at moderate
// load is idle between most requests, so each request paid for a wake-up
// (a futex call on its path) and for a thread competing with it for the
// CPUs. Here the same reads and writes are made with syscall.RawSyscall
// inside the connection's syscall.RawConn, so the netpoller, deadlines
// and Close work exactly as they do for the net.Conn; only the
// scheduler's syscall bookkeeping is left out. Go's own netpoller makes
// its epoll calls the same way.
package rawconn

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Conn is a TCP connection whose Read and Write use raw system calls;
// everything else is the embedded net.Conn's.
type Conn struct {
	net.Conn
	r, w half
	// peek is Idle's callback, set up once like the halves'.
	peek func(fd uintptr) bool
}

// half is one direction of a Conn. The callback handed to the RawConn and
// its arguments and results live here, set up once so that a read or
// write allocates nothing. net.Conn allows concurrent calls, so reads and
// writes each hold their own lock.
type half struct {
	mu  sync.Mutex
	op  string                            // "read" or "write", for errors
	run func(func(fd uintptr) bool) error // the RawConn's Read or Write
	fn  func(fd uintptr) bool             // the callback run calls
	p   []byte
	n   int
	err error // the callback's
}

// New returns c with raw reads and writes when it is a TCP connection on
// a platform this package supports, else c itself.
func New(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !supported {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{Conn: c}
	rw.r = half{op: "read", run: rc.Read, fn: rw.read}
	rw.w = half{op: "write", run: rc.Write, fn: rw.write}
	rw.peek = rw.peekFn
	return rw
}

// ErrUnsolicited is Idle's answer for an idle connection with bytes to
// read: no request asked for them (a server's "408 Request Timeout"
// before it closes, say), so the next response would be misread.
var ErrUnsolicited = errors.New("rawconn: unsolicited bytes on an idle connection")

// Idle checks, without waiting, that an idle keep-alive connection can
// carry a request: nil when it is open with nothing to read, io.EOF when
// the peer closed it, ErrUnsolicited when there are bytes to read, else
// the socket's error. http.Transport learns the same from the read it
// keeps pending on every idle connection; a connection without one (the
// lean upstream client's) asks before writing a request on it, since a
// request written to a connection the server already closed cannot be
// told apart from one the server read and then dropped — and a POST
// must then not be sent again.
func (c *Conn) Idle() error {
	_, err := c.do(&c.r, nil, c.peek)
	return err
}

// peekFn is Idle's callback: one non-blocking peek, never a wait.
func (c *Conn) peekFn(fd uintptr) bool {
	var b [1]byte
	for {
		n, errno := rawPeek(fd, b[:])
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
		case errno != 0:
			c.r.err = errno
		case n == 0:
			c.r.err = io.EOF
		default:
			c.r.err = ErrUnsolicited
		}
		return true
	}
}

// Read implements net.Conn like (*net.TCPConn).Read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return c.do(&c.r, p, c.r.fn)
}

// read is the read callback: false asks the netpoller to wait until the
// socket is readable.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, errno := rawRead(fd, c.r.p)
		switch errno {
		case 0:
			if n == 0 {
				c.r.err = io.EOF
			}
			c.r.n = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.r.err = errno
		return true
	}
}

// Write implements net.Conn like (*net.TCPConn).Write: all of p is
// written unless an error says why not.
func (c *Conn) Write(p []byte) (int, error) {
	return c.do(&c.w, p, c.w.fn)
}

// do runs fn (h's callback, or Idle's) on p inside h's RawConn method,
// which waits in the netpoller whenever the callback returns false.
func (c *Conn) do(h *half, p []byte, fn func(fd uintptr) bool) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.p, h.n, h.err = p, 0, nil
	err := h.run(fn)
	h.p = nil
	return c.result(h.op, h.n, err, h.err)
}

// write is the write callback: it writes what the socket buffer takes
// and returns false to wait until it takes more.
func (c *Conn) write(fd uintptr) bool {
	for c.w.n < len(c.w.p) {
		n, errno := rawWrite(fd, c.w.p[c.w.n:])
		switch errno {
		case 0:
			if n == 0 {
				c.w.err = io.ErrUnexpectedEOF
				return true
			}
			c.w.n += n
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.w.err = errno
		return true
	}
	return true
}

// result returns what *net.TCPConn's Read or Write (op) would for n bytes
// and err, the RawConn's error (a deadline, a closed connection), or
// cerr, the callback's (an errno, or EOF). RawConn names its operations
// raw-read and raw-write; callers tell a read error from a write error by
// the name, and a system call's by its *os.SyscallError.
func (c *Conn) result(op string, n int, err, cerr error) (int, error) {
	switch {
	case err != nil:
		if oe, ok := err.(*net.OpError); ok {
			err = oe.Err
		}
	case cerr == io.EOF:
		return n, io.EOF
	case cerr != nil:
		err = cerr
		if errno, ok := cerr.(syscall.Errno); ok {
			err = os.NewSyscallError(op, errno)
		}
	default:
		return n, nil
	}
	return n, &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// NetConn returns the underlying connection (as crypto/tls.Conn's does).
func (c *Conn) NetConn() net.Conn { return c.Conn }
