package httphead

import (
	"bufio"
	"io"
)

// Body is a message body of known length read from a bufio.Reader, as
// net/http's body reads one with a Content-Length: the last bytes come
// with io.EOF, and a connection that ends early is io.ErrUnexpectedEOF.
// Close does nothing: whoever owns the connection decides what happens to
// bytes left unread.
type Body struct {
	r *bufio.Reader
	n int64 // bytes left
}

// Reset makes b read the next n bytes of r.
func (b *Body) Reset(r *bufio.Reader, n int64) { b.r, b.n = r, n }

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	switch {
	case b.n == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// Close implements io.Closer.
func (b *Body) Close() error { return nil }
