package conformance

import (
	"io"
	"log/slog"
	"net"
	"testing"
)

// TestStaticLBPasses: a static address listens and carries a connection
// to a target and back; dropping it from the wanted set closes it; an
// address outside the pool is not the load balancer's to give.
func TestStaticLBPasses(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = target.Close() })
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	static := "127.0.0.77"
	lb := newStaticLB([]string{static}, slog.New(slog.DiscardHandler))
	t.Cleanup(lb.close)
	if !lb.owns(static) || lb.owns("192.0.2.1") {
		t.Fatal("pool membership wrong")
	}
	front := hostPort(static, 0)
	probe, err := net.Listen("tcp", front) // find a free port on the static address
	if err != nil {
		t.Fatal(err)
	}
	front = probe.Addr().String()
	_ = probe.Close()

	if up := lb.sync(map[string][]string{front: {target.Addr().String()}}); !up[front] {
		t.Fatalf("%s does not listen", front)
	}
	c, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	_ = c.Close()
	if err != nil || string(got) != "ping" {
		t.Fatalf("through the static address: %q, %v; want the target's echo", got, err)
	}

	lb.sync(nil)
	if c, err := net.Dial("tcp", front); err == nil {
		_ = c.Close()
		t.Fatalf("%s still listens after it was dropped", front)
	}
}
