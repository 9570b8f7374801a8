// Package freeport hands out TCP ports for a test to give a server that
// binds the port itself (a child process, a listener a config names).
//
// Asking the kernel for port 0 and closing the listener leaves a window in
// which any connection the machine opens may take the same port as its
// source port: the kernel picks both from the ephemeral range. On a busy
// machine (two test packages in parallel, each dialing upstreams) that
// window made "bind: address already in use" flake. So ports here come from
// below the ephemeral range, where the kernel never picks one by itself;
// the only race left is with another process choosing the same random port
// in the same instant.
//
// Within one process the ports are handed out in turn from a random start,
// so that no two calls return the same port (until the window wraps): a
// test takes several (a listener's, the admin's, the xDS server's) before
// any is bound, and independent random draws gave two of them the same
// port about once in a few thousand fixtures — a CI run starts hundreds
// ("bind: address already in use" when the second server started).
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// lowest is the first port handed out: above the well-known and most
// registered ports that local daemons listen on.
const lowest = 10000

// attempts bounds the search for a port free on every host.
const attempts = 200

// cursor is the offset into the window of the last port this process
// handed out (0: none yet). Package state on purpose: ports are a
// process-wide resource, and only a process-wide cursor keeps one
// process's picks apart.
var cursor atomic.Int64

// On returns a port that is free on every host listed at the time of the
// call ("" means every interface). With no host it is a port free on
// 127.0.0.1.
func On(hosts ...string) (int, error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	lo, hi := window()
	for range attempts {
		var port int
		if hi > lo {
			cursor.CompareAndSwap(0, 1+rand.Int64N(int64(hi-lo)))
			port = lo + int(cursor.Add(1)%int64(hi-lo))
		} else {
			// No room below the ephemeral range: let the kernel choose.
			p, err := kernelPort(hosts[0])
			if err != nil {
				return 0, err
			}
			port = p
		}
		if freeOnAll(port, hosts) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no TCP port free on all of %q after %d tries", hosts, attempts)
}

// window is [lowest, first ephemeral port), read from the kernel; when it
// cannot be read, Linux's default range is assumed.
func window() (lo, hi int) {
	first := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				first = n
			}
		}
	}
	return lowest, first
}

func kernelPort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("free port on %q: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeOnAll(port int, hosts []string) bool {
	for _, h := range hosts {
		l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		_ = l.Close()
	}
	return true
}
