package upstream

import (
	"context"
	"io"
	"net"
)

// conn is an upstream connection that lets a request body write itself.
// net/http sends a body of known length through an io.LimitedReader, which
// hides the body's WriteTo: the kernel socket then gets it in 32 KB pieces
// copied through a fresh 32 KB buffer per request. A 220 KB prompt costs
// seven write syscalls and an extra copy that way; here it is one write
// straight from the proxy's buffer.
type conn struct{ net.Conn }

// sizedWriterTo is a body that can write itself and knows how much is
// left: openai.Body's readers and bytes.Reader.
type sizedWriterTo interface {
	io.WriterTo
	Len() int
}

// ReadFrom implements io.ReaderFrom (net/http's persistConnWriter copies
// request bodies into the connection with io.Copy).
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		// WriteTo writes everything left, so it is only used when the
		// limit (the Content-Length) covers all of it.
		if w, ok := lr.R.(sizedWriterTo); ok && int64(w.Len()) <= lr.N {
			n, err := w.WriteTo(c.Conn)
			lr.N -= n
			return n, err
		}
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r) // splice and sendfile where they apply
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// writerOnly hides everything but Write, so io.Copy does not loop back
// into ReadFrom.
type writerOnly struct{ io.Writer }

// dialer wraps every dialed connection in conn.
type dialer struct{ d *net.Dialer }

func (d dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &conn{c}, nil
}
