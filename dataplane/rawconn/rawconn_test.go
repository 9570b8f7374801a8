package rawconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection: the dialed one
// wrapped by New, and the accepted one as it is.
func pair(t testing.TB) (raw, plain net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	plain = <-accepted
	if plain == nil {
		t.Fatal("accept failed")
	}
	raw = New(c)
	t.Cleanup(func() { raw.Close(); plain.Close() })
	return raw, plain
}

func TestNewWrapsOnlyTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if New(a) != a {
		t.Error("New wrapped a net.Pipe connection")
	}
	raw, _ := pair(t)
	_, wrapped := raw.(*Conn)
	if want := runtime.GOOS == "linux"; wrapped != want {
		t.Errorf("TCP connection wrapped: %v, want %v on %s", wrapped, want, runtime.GOOS)
	}
}

func TestReadWrite(t *testing.T) {
	raw, plain := pair(t)
	if _, err := raw.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(plain, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
	if n, err := raw.Read(nil); n != 0 || err != nil {
		t.Errorf("zero-length read = %d, %v; want 0, nil", n, err)
	}
	if _, err := plain.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(raw, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// A write larger than the socket buffers waits for the peer to read
// (the callback returns false on EAGAIN) and still writes everything.
func TestLargeWriteWaitsForPeer(t *testing.T) {
	raw, plain := pair(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // let the writer fill the buffers
		b, _ := io.ReadAll(io.LimitReader(plain, int64(len(data))))
		got <- b
	}()
	n, err := raw.Write(data)
	if err != nil || n != len(data) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(data))
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("peer read %d bytes, not the %d written", len(b), len(data))
	}
}

// A read waits in the netpoller until data arrives, while a write on the
// same connection goes ahead (run with -race: reads and writes keep their
// own state).
func TestReadWaitsWhileWriting(t *testing.T) {
	raw, plain := pair(t)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 5)
		_, err := io.ReadFull(raw, buf)
		if err == nil && string(buf) != "later" {
			err = errors.New("read " + string(buf))
		}
		done <- err
	}()
	for range 100 {
		if _, err := raw.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.ReadFull(plain, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	plain.Write([]byte("later"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEOF(t *testing.T) {
	raw, plain := pair(t)
	plain.Write([]byte("last"))
	plain.Close()
	b, err := io.ReadAll(raw)
	if err != nil || string(b) != "last" {
		t.Fatalf("ReadAll = %q, %v; want \"last\", nil", b, err)
	}
	if n, err := raw.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("read after EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

// Errors look like *net.TCPConn's: the callers (net/http, the proxy's
// server and client) tell timeouts, closed connections and read from
// write failures apart by them.
func TestErrorsMatchTCPConn(t *testing.T) {
	raw, plain := pair(t)
	check := func(name string, err error, op string, is error) {
		t.Helper()
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != op || oe.Net != "tcp" || oe.Source == nil || oe.Addr == nil {
			t.Errorf("%s: %#v, want a *net.OpError %q on tcp with both addresses", name, err, op)
		}
		if is != nil && !errors.Is(err, is) {
			t.Errorf("%s: %v is not %v", name, err, is)
		}
	}

	raw.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := raw.Read(make([]byte, 1))
	check("read past deadline", err, "read", os.ErrDeadlineExceeded)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read past deadline: %v is not a timeout", err)
	}
	raw.SetReadDeadline(time.Time{})

	raw.SetWriteDeadline(time.Unix(1, 0))
	_, err = raw.Write([]byte("x"))
	check("write past deadline", err, "write", os.ErrDeadlineExceeded)
	raw.SetWriteDeadline(time.Time{})

	// The peer resets the connection: a write fails with the errno.
	plain.(*net.TCPConn).SetLinger(0)
	plain.Close()
	time.Sleep(20 * time.Millisecond)
	_, err = raw.Write([]byte("x"))
	for i := 0; err == nil && i < 100; i++ {
		_, err = raw.Write([]byte("x"))
	}
	var se *os.SyscallError
	if check("write after reset", err, "write", nil); !errors.As(err, &se) || se.Syscall != "write" {
		t.Errorf("write after reset: %v, want an os.SyscallError of write", err)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write after reset: %v, want ECONNRESET or EPIPE", err)
	}

	raw.Close()
	_, err = raw.Read(make([]byte, 1))
	check("read after close", err, "read", net.ErrClosed)
	_, err = raw.Write([]byte("x"))
	check("write after close", err, "write", net.ErrClosed)
}

// A read blocked in the netpoller ends when the connection is closed,
// like a net.Conn's.
func TestCloseEndsBlockedRead(t *testing.T) {
	raw, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := raw.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	raw.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked read ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked read")
	}
}

func BenchmarkPingPong(b *testing.B) {
	for _, name := range []string{"net", "raw"} {
		b.Run(name, func(b *testing.B) {
			c, peer := pair(b)
			rc, ok := c.(*Conn)
			if !ok {
				b.Skip("no raw connections on " + runtime.GOOS)
			}
			if name == "net" {
				c = rc.NetConn()
			}
			go func() {
				buf := make([]byte, 1024)
				for {
					n, err := peer.Read(buf)
					if err != nil {
						return
					}
					peer.Write(buf[:n])
				}
			}()
			msg, buf := make([]byte, 1024), make([]byte, 1024)
			b.ReportAllocs()
			for b.Loop() {
				c.Write(msg)
				io.ReadFull(c, buf)
			}
		})
	}
}

// TestIdle: an idle connection is usable until the peer sends something
// unasked or closes it, and checking never waits or takes a byte.
func TestIdle(t *testing.T) {
	if !supported {
		t.Skip("raw connections are Linux only")
	}
	raw, plain := pair(t)
	c := raw.(*Conn)
	if err := c.Idle(); err != nil {
		t.Fatalf("open idle connection: %v", err)
	}
	const unasked = "HTTP/1.1 408 Request Timeout\r\n\r\n"
	if _, err := plain.Write([]byte(unasked)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return errors.Is(c.Idle(), ErrUnsolicited) })
	b := make([]byte, 8)
	n, err := c.Read(b)
	if err != nil || string(b[:n]) != "HTTP/1.1" {
		t.Fatalf("Idle took bytes: read %q, %v", b[:n], err)
	}
	io.CopyN(io.Discard, c, int64(len(unasked)-n))
	plain.Close()
	waitFor(t, func() bool { return c.Idle() == io.EOF })

	// A reset (SO_LINGER 0) is the socket's error.
	raw, plain = pair(t)
	plain.(*net.TCPConn).SetLinger(0)
	plain.Close()
	waitFor(t, func() bool {
		err := raw.(*Conn).Idle()
		return err != nil && errors.Is(err, syscall.ECONNRESET)
	})
	// A past deadline (a cancelled request's) fails the check at once.
	raw, _ = pair(t)
	raw.SetReadDeadline(time.Unix(1, 0))
	if err := raw.(*Conn).Idle(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past deadline: %v", err)
	}
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !f(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkIdle(b *testing.B) {
	if !supported {
		b.Skip("raw connections are Linux only")
	}
	raw, _ := pair(b)
	c := raw.(*Conn)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Idle(); err != nil {
			b.Fatal(err)
		}
	}
}
