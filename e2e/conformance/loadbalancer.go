package conformance

import (
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// staticLB is the load balancer's side of static addresses: a Service
// asking for spec.loadBalancerIP gets it only if the address is in the
// load balancer's own pool (like a cloud's reserved IPs), and then the
// address really carries traffic: each Service port listens on it and
// passes connections to a Ready pod's target port.
type staticLB struct {
	pool []string
	log  *slog.Logger

	mu        sync.Mutex
	frontends map[string]*frontend // by "<ip>:<port>"
}

// frontend is one listening address of a static IP and where it sends
// connections: targets returns the "<pod ip>:<port>"s to pick from.
type frontend struct {
	ln      net.Listener
	targets atomic.Pointer[[]string]
	next    atomic.Uint64
}

func newStaticLB(pool []string, log *slog.Logger) *staticLB {
	return &staticLB{pool: pool, log: log, frontends: map[string]*frontend{}}
}

// owns reports whether ip is in the pool.
func (lb *staticLB) owns(ip string) bool { return slices.Contains(lb.pool, ip) }

// sync makes the listening addresses exactly want ("<ip>:<port>" → the
// targets for it), opening new ones and closing those no longer wanted.
// An address that cannot be opened is logged and left out of the result,
// which lists the addresses that listen.
func (lb *staticLB) sync(want map[string][]string) map[string]bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for addr, f := range lb.frontends {
		if _, ok := want[addr]; !ok {
			f.close()
			delete(lb.frontends, addr)
		}
	}
	up := map[string]bool{}
	for addr, targets := range want {
		f := lb.frontends[addr]
		if f == nil {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				lb.log.Warn("static load balancer address", "addr", addr, "err", err)
				continue
			}
			f = &frontend{ln: ln}
			lb.frontends[addr] = f
			go f.serve()
		}
		f.targets.Store(&targets)
		up[addr] = true
	}
	return up
}

// close stops every listening address.
func (lb *staticLB) close() {
	lb.sync(nil)
}

func (f *frontend) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.pass(c)
	}
}

// pass copies a connection to and from one of the targets, in turn.
func (f *frontend) pass(c net.Conn) {
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

// close stops listening; connections in flight end when their peers do.
func (f *frontend) close() { _ = f.ln.Close() }

func hostPort(ip string, port int32) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}
