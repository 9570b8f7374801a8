package upstream

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/infergate/infergate/dataplane/openai"
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

// TestInMemory: a small buffered body reaches http.Transport as a copy it
// recognises as in memory; a large one, or one of unknown size, as it is.
func TestInMemory(t *testing.T) {
	for _, tc := range []struct {
		size int
		copy bool
	}{{0, true}, {1 << 10, true}, {inMemoryLimit, true}, {inMemoryLimit + 1, false}} {
		src := bytes.Repeat([]byte("x"), tc.size)
		b, err := openai.ReadBody(bytes.NewReader(src), int64(len(src)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		in := b.NewReader()
		out := inMemory(in)
		if (out != in) != tc.copy {
			t.Fatalf("%d bytes: copied %v, want %v", tc.size, out != in, tc.copy)
		}
		// A copy outlives the body's buffer.
		b.Close()
		got, err := io.ReadAll(out)
		if tc.copy && (err != nil || !bytes.Equal(got, src)) {
			t.Errorf("%d bytes: copy read %d bytes, %v", tc.size, len(got), err)
		}
	}
	other := io.NopCloser(strings.NewReader("streamed"))
	if out := inMemory(other); out != other {
		t.Errorf("a body of unknown size became %T", out)
	}
}
