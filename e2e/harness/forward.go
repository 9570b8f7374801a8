package harness

import (
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Forwarder listens on one address and passes each connection on to one
// of its targets, in turn: a load balancer's frontend, or a pod's port
// forwarded to a process that listens elsewhere.
type Forwarder struct {
	ln      net.Listener
	targets atomic.Pointer[[]string]
	next    atomic.Uint64
}

// Forward listens on addr and passes connections to targets until Close.
func Forward(addr string, targets ...string) (*Forwarder, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f := &Forwarder{ln: ln}
	f.SetTargets(targets)
	go f.serve()
	return f, nil
}

// Addr is the listening address.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// SetTargets replaces the targets; connections open stay where they are.
func (f *Forwarder) SetTargets(targets []string) { f.targets.Store(&targets) }

// Close stops listening; connections in flight end when their peers do.
func (f *Forwarder) Close() { _ = f.ln.Close() }

func (f *Forwarder) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.pass(c)
	}
}

// pass copies a connection to and from the next target.
func (f *Forwarder) pass(c net.Conn) {
	defer c.Close()
	targets := *f.targets.Load()
	if len(targets) == 0 {
		return
	}
	up, err := net.DialTimeout("tcp", targets[f.next.Add(1)%uint64(len(targets))], 2*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		_ = up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	_ = c.(*net.TCPConn).CloseWrite()
	<-done
}
