package openai

import (
	"errors"
	"io"
	"slices"
	"sync"
)

// DefaultMaxBodyBytes is the default limit on a JSON request body the proxy
// buffers to read its model: 16 MiB, far above the largest prompts sent in
// practice (a 128k-token prompt is about 0.5 MB) while bounding memory per
// request. Larger bodies get HTTP 413.
const DefaultMaxBodyBytes = 16 << 20

// ErrTooLarge is returned by ReadBody when the body exceeds the limit.
var ErrTooLarge = errors.New("request body too large")

var errClosed = errors.New("request body already closed")

// Buffers above this size are not kept for reuse, so one huge request does
// not pin memory for the life of the process.
const maxPooledCap = 1 << 20

// bufPool recycles body buffers. Buffers, not Body values, are pooled: a
// stale reference to a closed Body must never see a later request's bytes.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Body is a buffered request body. It is an io.ReadCloser for forwarding;
// Close returns its buffer for reuse. Read after Close fails instead of
// reading a recycled buffer, which makes reuse safe even if a transport
// goroutine touches the body after the request ended.
type Body struct {
	mu     sync.Mutex
	buf    []byte
	off    int
	closed bool
	// pooled is the pool's slice header buf came from (nil if none).
	pooled *[]byte
	// budget, when set, holds reserved bytes for this body's buffer.
	budget   *Budget
	reserved int64
}

// minGrow is the least a buffer of unknown final size grows by.
const minGrow = 32 << 10

// ReadBody reads r (whose length is contentLength, -1 when unknown) into a
// pooled buffer, failing with ErrTooLarge beyond limit bytes.
func ReadBody(r io.Reader, contentLength, limit int64) (*Body, error) {
	return ReadBodyWithin(r, contentLength, limit, nil)
}

// ReadBodyWithin is ReadBody within budget (nil: none): the buffer's
// capacity is reserved before it is allocated — a declared length at
// once, before any of the body is read — and ErrBudget returned when the
// budget cannot cover it. The reservation is given back on Close.
func ReadBodyWithin(r io.Reader, contentLength, limit int64, budget *Budget) (*Body, error) {
	if contentLength > limit {
		return nil, ErrTooLarge
	}
	b := &Body{budget: budget}
	if contentLength > 0 && contentLength > 16<<10 {
		// One buffer of the declared size (plus one byte, to see a body
		// longer than declared without growing).
		if !b.grow(contentLength + 1) {
			return nil, ErrBudget
		}
	} else {
		bp := bufPool.Get().(*[]byte)
		b.buf, b.pooled = (*bp)[:0], bp
		if !budget.reserve(int64(cap(b.buf))) {
			b.buf, b.pooled = nil, nil
			bufPool.Put(bp)
			return nil, ErrBudget
		}
		b.reserved = int64(cap(b.buf))
	}
	for {
		if len(b.buf) == cap(b.buf) {
			// Grow by doubling, but never past limit+1: a body one byte
			// over the limit is too large, however long it goes on.
			want := min(max(2*int64(cap(b.buf)), minGrow), limit+1)
			if want <= int64(cap(b.buf)) || !b.grow(want) {
				err := ErrTooLarge
				if want > int64(cap(b.buf)) {
					err = ErrBudget
				}
				b.release()
				return nil, err
			}
		}
		n, err := r.Read(b.buf[len(b.buf):cap(b.buf)])
		b.buf = b.buf[:len(b.buf)+n]
		if int64(len(b.buf)) > limit {
			b.release()
			return nil, ErrTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			b.release()
			return nil, err
		}
	}
}

// grow moves the body to a buffer of capacity n, reserving the difference
// first; false when the budget does not cover it.
func (b *Body) grow(n int64) bool {
	if !b.budget.reserve(n - b.reserved) {
		return false
	}
	b.reserved = n
	nb := make([]byte, len(b.buf), n)
	copy(nb, b.buf)
	if b.pooled != nil {
		*b.pooled = b.buf[:0]
		bufPool.Put(b.pooled)
		b.pooled = nil
	}
	b.buf = nb
	return true
}

// Bytes returns the body; valid until Close.
func (b *Body) Bytes() []byte { return b.buf }

// Len is the body length in bytes.
func (b *Body) Len() int { return len(b.buf) }

// RewriteModel puts name in place of the model string at f (as FindModel
// found it in this body) and rewinds. The rest of the body moves within
// its own buffer: a rewritten copy put back would copy the whole prompt
// twice. It returns where the new name sits.
func (b *Body) RewriteModel(f ModelField, name string) ModelField {
	q := quote(name)
	b.mu.Lock()
	b.buf = slices.Replace(b.buf, f.Start, f.End, q...)
	b.off = 0
	b.mu.Unlock()
	return ModelField{Name: name, Start: f.Start, End: f.Start + len(q)}
}

// Replace makes p the body (copied into the body's own buffer) and
// rewinds: an endpoint picker may send back a changed body.
func (b *Body) Replace(p []byte) {
	b.mu.Lock()
	b.buf = append(b.buf[:0], p...)
	b.off = 0
	b.mu.Unlock()
}

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errClosed
	}
	if b.off >= len(b.buf) {
		return 0, io.EOF
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	return n, nil
}

// WriteTo implements io.WriterTo so transports copy without a buffer.
func (b *Body) WriteTo(w io.Writer) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errClosed
	}
	n, err := w.Write(b.buf[b.off:])
	b.off += n
	return int64(n), err
}

// Close implements io.Closer; it is safe to call more than once.
func (b *Body) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.release()
	return nil
}

func (b *Body) release() {
	buf, bp := b.buf, b.pooled
	b.buf, b.pooled, b.closed = nil, nil, true
	b.budget.release(b.reserved)
	b.reserved = 0
	if cap(buf) <= maxPooledCap {
		// The pool's own slice header goes back (a new one would be
		// allocated), now holding the buffer this body ended with.
		if bp == nil {
			bp = new([]byte)
		}
		*bp = buf[:0]
		bufPool.Put(bp)
	}
}

// NewReader returns an independent reader over the body for one attempt
// at sending it. Closing it does not release
// the body; reading after the body is closed fails.
func (b *Body) NewReader() io.ReadCloser { return &bodyReader{b: b} }

type bodyReader struct {
	b   *Body
	off int
}

func (r *bodyReader) Read(p []byte) (int, error) {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if r.b.closed {
		return 0, errClosed
	}
	if r.off >= len(r.b.buf) {
		return 0, io.EOF
	}
	n := copy(p, r.b.buf[r.off:])
	r.off += n
	return n, nil
}

func (r *bodyReader) Close() error { return nil }

// Len is the number of bytes not read yet (0 once the body is closed), so
// a writer can tell that WriteTo sends no more than it expects.
func (r *bodyReader) Len() int {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if r.b.closed {
		return 0
	}
	return max(len(r.b.buf)-r.off, 0)
}

// WriteTo implements io.WriterTo, so the upstream connection (see
// upstream's conn) sends the rest of the body in one write instead of
// copying it through a 32 KB buffer.
func (r *bodyReader) WriteTo(w io.Writer) (int64, error) {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if r.b.closed {
		return 0, errClosed
	}
	n, err := w.Write(r.b.buf[r.off:])
	r.off += n
	return int64(n), err
}
