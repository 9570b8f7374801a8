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

// ReadBody reads r (whose length is contentLength, -1 when unknown) into a
// pooled buffer, failing with ErrTooLarge beyond limit bytes.
func ReadBody(r io.Reader, contentLength, limit int64) (*Body, error) {
	return ReadBodyWithin(r, contentLength, limit, nil)
}

// ReadBodyWithin is ReadBody within budget (nil: none): every buffer's
// capacity is reserved before it is allocated — a declared length at
// once, before any of the body is read — and ErrBudget returned when the
// budget cannot cover it. The reservation is given back on Close.
//
// A body of known length gets one buffer of that size. One of unknown
// length (chunked) that outgrows the first, pooled buffer is read into
// pooled chunks and copied once into a buffer of its final size, instead
// of growing a buffer by doubling: that left half-size copies behind as
// garbage (the heap of many concurrent large uploads grew to about
// three times what they held) and reserved up to twice the body.
func ReadBodyWithin(r io.Reader, contentLength, limit int64, budget *Budget) (*Body, error) {
	if contentLength > limit {
		return nil, ErrTooLarge
	}
	b := &Body{budget: budget}
	if contentLength > 16<<10 {
		// One buffer of the declared size (plus one byte, to see a body
		// longer than declared without growing).
		if !b.budget.reserve(contentLength + 1) {
			return nil, ErrBudget
		}
		b.buf, b.reserved = make([]byte, 0, contentLength+1), contentLength+1
	} else {
		bp := bufPool.Get().(*[]byte)
		if !budget.reserve(int64(cap(*bp))) {
			bufPool.Put(bp)
			return nil, ErrBudget
		}
		b.buf, b.pooled, b.reserved = (*bp)[:0], bp, int64(cap(*bp))
	}
	for len(b.buf) < cap(b.buf) {
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
	if err := b.spill(r, limit); err != nil {
		b.release()
		return nil, err
	}
	return b, nil
}

// chunkSize is the piece a body of unknown length is read in once it
// outgrew its first buffer; chunks are pooled, so the pieces of one
// upload serve the next instead of becoming garbage.
const chunkSize = 64 << 10

var chunkPool = sync.Pool{New: func() any { c := make([]byte, chunkSize); return &c }}

// spill reads the rest of r into chunks, then puts the whole body in one
// buffer of its size. Each chunk, and then the final buffer, is reserved
// before it is taken; the chunks go back to the pool and the budget.
func (b *Body) spill(r io.Reader, limit int64) error {
	var chunks []*[]byte
	var reserved int64
	last := 0 // bytes in the last chunk
	defer func() {
		for _, c := range chunks {
			chunkPool.Put(c)
		}
		b.budget.release(reserved)
	}()
	total := int64(len(b.buf))
	for {
		// At most one byte past the limit is read (and reserved): that
		// byte says the body is too large.
		want := min(chunkSize, limit+1-total)
		if !b.budget.reserve(want) {
			return ErrBudget
		}
		reserved += want
		c := chunkPool.Get().(*[]byte)
		chunks = append(chunks, c)
		n, err := io.ReadFull(r, (*c)[:want])
		total += int64(n)
		last = n
		if total > limit {
			return ErrTooLarge
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if !b.budget.reserve(total) {
		return ErrBudget
	}
	buf := make([]byte, 0, total)
	buf = append(buf, b.buf...)
	for i, c := range chunks {
		n := chunkSize
		if i == len(chunks)-1 {
			n = last
		}
		buf = append(buf, (*c)[:n]...)
	}
	old := b.reserved
	b.putBuffer()
	b.budget.release(old)
	b.buf, b.reserved = buf, total
	return nil
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
	b.closed = true
	b.budget.release(b.reserved)
	b.reserved = 0
	b.putBuffer()
}

// putBuffer gives the body's buffer back to the pool (a small one) and
// drops it.
func (b *Body) putBuffer() {
	buf, bp := b.buf, b.pooled
	b.buf, b.pooled = nil, nil
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
