package pipeline

import (
	"bytes"
	"mime"
	"net/http"
	"strings"

	"github.com/infergate/infergate/dataplane/openai"
)

// maxInspected bounds what the inspector holds: a JSON body collected for
// usage or model restore, or one partial SSE event. Beyond it the rest of
// the response passes through untouched (and uncounted).
const maxInspected = 4 << 20

// maxKeptBuffer is the largest buffer kept for the next request.
const maxKeptBuffer = 64 << 10

// inspector watches a model server's response on its way to the client:
// it reads the usage (from a JSON body, or from the SSE event that carries
// it when stream_options.include_usage is set) and, after a model rewrite,
// puts the client's model name back into the JSON body and into every SSE
// event. SSE is handled one complete event at a time, so events still reach
// the client as they are produced; only a partial event is held back.
type inspector struct {
	mode int
	// target is the model the request was rewritten to and client the
	// name the client sent; restore is false without a rewrite.
	target, client string
	restore        bool

	buf   []byte
	out   []byte
	usage openai.Usage
	found bool
}

const (
	inspectOff = iota
	inspectJSON
	inspectSSE
)

// reset prepares for a new response, keeping a modest buffer.
func (in *inspector) reset() {
	buf, out := in.buf, in.out
	if cap(buf) > maxKeptBuffer {
		buf = nil
	}
	if cap(out) > maxKeptBuffer {
		out = nil
	}
	*in = inspector{buf: buf[:0], out: out[:0]}
}

// begin picks the mode from the response headers (at commit time) and
// drops a Content-Length the rewrite would make wrong.
func (in *inspector) begin(h http.Header, status int) {
	in.mode = inspectOff
	if status != http.StatusOK || len(h["Content-Encoding"]) > 0 {
		return
	}
	ct := ""
	if v := h["Content-Type"]; len(v) > 0 {
		ct = v[0]
	}
	switch {
	case strings.HasPrefix(ct, "text/event-stream"):
		in.mode = inspectSSE
	case ct == "application/json" || strings.HasPrefix(ct, "application/json;"):
		in.mode = inspectJSON
	default:
		if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" {
			in.mode = inspectJSON
		}
	}
	if in.mode == inspectJSON && in.restore {
		delete(h, "Content-Length")
	}
}

func (in *inspector) write(w http.ResponseWriter, p []byte) (int, error) {
	switch in.mode {
	case inspectSSE:
		return in.writeSSE(w, p)
	case inspectJSON:
		if in.restore {
			// Held until the end: the model string may change length.
			if len(in.buf)+len(p) > maxInspected {
				in.mode = inspectOff
				if _, err := w.Write(in.buf); err != nil {
					return 0, err
				}
				return w.Write(p)
			}
			in.buf = append(in.buf, p...)
			return len(p), nil
		}
		if len(in.buf)+len(p) > maxInspected {
			in.mode = inspectOff
		} else {
			in.buf = append(in.buf, p...)
		}
	}
	return w.Write(p)
}

func (in *inspector) writeSSE(w http.ResponseWriter, p []byte) (int, error) {
	if !in.restore {
		// Nothing to change: pass the bytes on at once and keep only the
		// unfinished event back, for the usage scan.
		n, err := w.Write(p)
		in.buf = append(in.buf, p...)
		if end := lastEventEnd(in.buf); end > 0 {
			for ev := range splitEvents(in.buf[:end]) {
				in.scanUsage(ev)
			}
			in.buf = in.buf[:copy(in.buf, in.buf[end:])]
		}
		if len(in.buf) > maxInspected {
			in.buf = in.buf[:0] // an event this large carries no usage we read
		}
		return n, err
	}
	in.buf = append(in.buf, p...)
	end := lastEventEnd(in.buf)
	if end == 0 {
		if len(in.buf) > maxInspected {
			in.mode = inspectOff
			_, err := w.Write(in.buf)
			in.buf = in.buf[:0]
			return len(p), err
		}
		return len(p), nil
	}
	in.out = in.out[:0]
	for ev := range splitEvents(in.buf[:end]) {
		in.out = in.appendEvent(in.out, ev)
	}
	_, err := w.Write(in.out)
	in.buf = in.buf[:copy(in.buf, in.buf[end:])]
	return len(p), err
}

// lastEventEnd returns the index just after the last blank line ending an
// event in b ("\n\n" or "\r\n\r\n"), or 0. Both end in '\n', so it walks
// back over newlines only: bytes.LastIndex would rescan the whole buffer
// for the "\r\n\r\n" an LF stream never has.
func lastEventEnd(b []byte) int {
	for j := len(b); ; {
		j = bytes.LastIndexByte(b[:j], '\n')
		if j < 0 {
			return 0
		}
		if j >= 1 && b[j-1] == '\n' || j >= 3 && b[j-1] == '\r' && b[j-2] == '\n' && b[j-3] == '\r' {
			return j + 1
		}
	}
}

// eventEnd returns the index just after the first blank line ending an
// event in b, or -1. One pass over the newlines: looking for each
// terminator with bytes.Index would rescan the rest of a many-event chunk
// per event for the one that is absent.
func eventEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		j += i
		if j+1 < len(b) && b[j+1] == '\n' {
			return j + 2 // "\n\n"
		}
		if j >= 1 && b[j-1] == '\r' && j+2 < len(b) && b[j+1] == '\r' && b[j+2] == '\n' {
			return j + 3 // "\r\n\r\n"
		}
		i = j + 1
	}
}

// splitEvents yields the events of b, each with its terminating blank line.
func splitEvents(b []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			e := eventEnd(b)
			if e < 0 {
				yield(b)
				return
			}
			if !yield(b[:e]) {
				return
			}
			b = b[e:]
		}
	}
}

func (in *inspector) scanUsage(ev []byte) {
	data, ok := openai.SSEData(ev)
	if !ok {
		return
	}
	if u, ok := openai.ParseUsage(data); ok {
		in.usage, in.found = u, true
	}
}

// appendEvent appends ev with its model restored to the client's name.
func (in *inspector) appendEvent(dst, ev []byte) []byte {
	data, ok := openai.SSEData(ev)
	if !ok || len(data) == 0 || data[0] != '{' {
		return append(dst, ev...)
	}
	if u, ok := openai.ParseUsage(data); ok {
		in.usage, in.found = u, true
	}
	f, ok, err := openai.FindModel(data)
	if err != nil || !ok || f.Name != in.target {
		return append(dst, ev...)
	}
	// data aliases ev: splice the restored name into the event.
	off := cap(ev) - cap(data)
	dst = append(dst, ev[:off]...)
	dst = append(dst, openai.RewriteModel(data, f, in.client)...)
	return append(dst, ev[off+len(data):]...)
}

// finish writes what is held back and reads the usage of a JSON body.
func (in *inspector) finish(w http.ResponseWriter) error {
	switch in.mode {
	case inspectSSE:
		// Without a rewrite every byte was passed on already.
		if in.restore && len(in.buf) > 0 {
			_, err := w.Write(in.buf)
			return err
		}
	case inspectJSON:
		if u, ok := openai.ParseUsage(in.buf); ok {
			in.usage, in.found = u, true
		}
		if !in.restore {
			return nil
		}
		body := in.buf
		if f, ok, err := openai.FindModel(body); err == nil && ok && f.Name == in.target {
			body = openai.RewriteModel(body, f, in.client)
		}
		_, err := w.Write(body)
		return err
	}
	return nil
}
