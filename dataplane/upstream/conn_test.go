package upstream

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// countConn records the writes reaching the connection.
type countConn struct {
	net.Conn
	writes int
	buf    bytes.Buffer
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes++
	return c.buf.Write(p)
}

func TestConnReadFromWritesBodyOnce(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 220<<10)
	for _, tc := range []struct {
		name   string
		r      io.Reader
		writes int
	}{
		// What net/http passes for a body of known length.
		{"sized body", &io.LimitedReader{R: bytes.NewReader(body), N: int64(len(body))}, 1},
		// A limit below what is left must not be overrun: copied in pieces.
		{"limit below length", &io.LimitedReader{R: bytes.NewReader(append(body, "tail"...)), N: int64(len(body))}, 7},
		{"plain reader", struct{ io.Reader }{bytes.NewReader(body)}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := &countConn{}
			n, err := (&conn{cc}).ReadFrom(tc.r)
			if err != nil || n != int64(len(body)) || !bytes.Equal(cc.buf.Bytes(), body) {
				t.Fatalf("ReadFrom = %d, %v; wrote %d bytes", n, err, cc.buf.Len())
			}
			if cc.writes != tc.writes {
				t.Errorf("%d writes, want %d", cc.writes, tc.writes)
			}
		})
	}
}
