package harness

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortBelowEphemeralRange checks FreePort keeps out of the range
// outgoing connections take their ports from, and that its port binds.
func TestFreePortBelowEphemeralRange(t *testing.T) {
	lo, ok := ephemeralLow()
	if !ok || lo <= minPickPort+1000 {
		t.Skipf("no ephemeral range below which to pick (got %d, %v)", lo, ok)
	}
	for range 20 {
		port := FreePort(t, "127.0.0.1")
		if port < minPickPort || port >= lo {
			t.Fatalf("FreePort = %d, want in [%d, %d)", port, minPickPort, lo)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d from FreePort does not bind: %v", port, err)
		}
		l.Close()
	}
}
