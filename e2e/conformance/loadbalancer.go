package conformance

import (
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"

	"github.com/infergate/infergate/e2e/harness"
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
	frontends map[string]*harness.Forwarder // by "<ip>:<port>"
}

func newStaticLB(pool []string, log *slog.Logger) *staticLB {
	return &staticLB{pool: pool, log: log, frontends: map[string]*harness.Forwarder{}}
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
			f.Close()
			delete(lb.frontends, addr)
		}
	}
	up := map[string]bool{}
	for addr, targets := range want {
		f := lb.frontends[addr]
		if f == nil {
			var err error
			if f, err = harness.Forward(addr); err != nil {
				lb.log.Warn("static load balancer address", "addr", addr, "err", err)
				continue
			}
			lb.frontends[addr] = f
		}
		f.SetTargets(targets)
		up[addr] = true
	}
	return up
}

// close stops every listening address.
func (lb *staticLB) close() {
	lb.sync(nil)
}

func hostPort(ip string, port int32) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}
