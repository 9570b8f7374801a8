package http1

import (
	"io"
	"net/http"
	"sync"
)

// reqBody is the request body the handler reads: net/http's body reader
// (from http.ReadRequest) plus what the server needs to know — whether it
// was read to the end (then the connection is watched for the client going
// away, and can serve the next request), and the 100 Continue a client
// that sent "Expect: 100-continue" waits for before it sends the body.
type reqBody struct {
	rc io.ReadCloser
	w  *response
	// orig is the request http.ReadRequest returned, whose Trailer its
	// chunked body reader fills in at the end (w.req is a copy).
	orig *http.Request

	// mu serialises reads and Close, which net/http allows from another
	// goroutine than the handler's (http.Transport reads the body of a
	// request it forwards on its own goroutine).
	mu             sync.Mutex
	n              int64 // bytes read
	sawEOF         bool
	closed         bool
	expectContinue bool
	err            error // a read error other than EOF
}

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.readLocked(p)
}

func (b *reqBody) readLocked(p []byte) (int, error) {
	if b.sawEOF {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.expectContinue {
		b.expectContinue = false
		b.w.sendContinue()
	}
	b.w.c.clearStaleDeadline()
	n, err := b.rc.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		b.sawEOF = true
		if b.orig != nil && b.w.req.Trailer == nil {
			// Undeclared trailers: net/http's reader made a new map on
			// the request it knows; declared ones share the map.
			b.w.req.Trailer = b.orig.Trailer
		}
		b.w.c.bodyEOF()
	case err != nil:
		b.err = err
	}
	return n, err
}

// Close closes the body. A body not read to the end is read on (up to
// maxPostHandlerReadBytes, as net/http's server does) so the connection
// can be kept; a longer one is left and the connection closes after the
// response.
func (b *reqBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if !b.sawEOF && !b.expectContinue {
		b.discardLocked()
	}
	return nil
}

// discard reads and drops the rest of the body; false when more than
// maxPostHandlerReadBytes remain or it cannot be read.
func (b *reqBody) discard() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.discardLocked()
}

func (b *reqBody) discardLocked() bool {
	if cl := b.w.req.ContentLength; cl > 0 && cl-b.n > maxPostHandlerReadBytes {
		return false
	}
	var buf [4096]byte
	for limit := int64(maxPostHandlerReadBytes); limit > 0 && !b.sawEOF && b.err == nil; {
		n, _ := b.readLocked(buf[:min(int64(len(buf)), limit)])
		limit -= int64(n)
	}
	return b.sawEOF
}

// drained reports whether the body was read to the end, so the next
// request starts where this one's body ended.
func (b *reqBody) drained() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sawEOF
}

// finish closes the body after the response: further reads fail.
func (b *reqBody) finish() {
	if b.rc == nil {
		return
	}
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// sendContinue writes "100 Continue" unless the response head went first.
func (w *response) sendContinue() {
	w.contMu.Lock()
	defer w.contMu.Unlock()
	if !w.canContinue {
		return
	}
	w.canContinue = false
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	bw.Flush()
}
