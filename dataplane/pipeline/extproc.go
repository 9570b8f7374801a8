package pipeline

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/extproc"
	"github.com/infergate/infergate/dataplane/openai"
	"github.com/infergate/infergate/dataplane/picker"
)

// external asks the external endpoint picker of c's backend where the
// request goes (once per backend and request: a retry on the same pool
// continues down the picker's list, one that moves to another pool asks
// that pool's picker) and returns the picker for the attempt: the
// picker's decision, the pool's own picker when the picker failed and
// the pool fails open, or one that fails the attempt (503) when it fails
// closed. answered is true when the picker answered the request itself
// and nothing more is to be done.
func (m *Pipeline) external(w http.ResponseWriter, c *call, ex *exchange) (pk picker.Picker, answered bool) {
	bs := c.bs
	if c.ext != nil {
		if c.extFor == bs {
			return c.ext, false
		}
		c.ext.Close()
		c.ext, c.extFor = nil, nil
	}
	x, err := bs.ext.Start(c.r.Context(), m.pickerRequest(c))
	if err != nil {
		var e *extproc.Error
		if !errors.As(err, &e) {
			e = &extproc.Error{Picker: bs.ext.Name(), Phase: "request", Reason: extproc.ReasonStreamError, Err: err}
		}
		switch {
		case e.Reason == extproc.OutcomeCanceled:
			bs.ext.Outcome(extproc.OutcomeCanceled)
			return failedPicker{e}, false
		case bs.ext.FailOpen():
			bs.ext.Outcome(extproc.OutcomeFailOpen)
			bs.ext.LogFailure(e, "picked locally (FailOpen)")
			return bs.picker, false
		}
		bs.ext.Outcome(extproc.OutcomeFailClose)
		bs.ext.LogFailure(e, "answered 503 (FailClose)")
		return failedPicker{e}, false
	}
	if im := x.Immediate(); im != nil {
		bs.ext.Outcome(extproc.OutcomeImmediate)
		ex.status = writeImmediate(w, im, bs.ext.Name())
		x.Close()
		return nil, true
	}
	bs.ext.Outcome(extproc.OutcomePicked)
	x.ApplyHeaders(c.r.Header)
	if b, ok := x.Body(); ok {
		m.replaceBody(c, b)
	}
	c.ext, c.extFor = x, bs
	return x, false
}

// pickerRequest is what the picker is shown: the request as it would be
// forwarded to the pool, less any destination a client tried to name.
func (m *Pipeline) pickerRequest(c *call) *extproc.Request {
	r := c.r
	delete(r.Header, "X-Gateway-Destination-Endpoint")
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	req := &extproc.Request{Method: r.Method, Path: r.URL.RequestURI(), Authority: r.Host, Scheme: scheme, Header: r.Header}
	if c.body != nil {
		req.Body = c.body.Bytes()
	}
	return req
}

// replaceBody makes b the request body (the picker changed it), finding
// the model in it again for a retry that rewrites it.
func (m *Pipeline) replaceBody(c *call, b []byte) {
	if c.body == nil {
		body, err := openai.ReadBody(bytes.NewReader(b), int64(len(b)), int64(len(b)))
		if err != nil {
			return // unreachable: the limit is the length
		}
		c.body, c.ownBody = body, true
		c.r.GetBody = func() (io.ReadCloser, error) { return c.body.NewReader(), nil }
	} else {
		c.body.Replace(b)
	}
	c.r.ContentLength = int64(len(b))
	c.r.TransferEncoding = nil
	c.preq.Body = c.body.Bytes()
	if f, ok, err := openai.FindModel(c.body.Bytes()); err == nil && ok {
		c.inBody = f
	} else {
		// No model to rewrite for another backendRef any more.
		c.hasModel = false
	}
}

// endExternal closes c's picker stream, the request having ended.
func endExternal(c *call) {
	if c.ext != nil {
		c.ext.Close()
	}
	if c.ownBody {
		_ = c.body.Close()
	}
}

// failedPicker fails every pick with the picker's error (FailClose).
type failedPicker struct{ err *extproc.Error }

func (f failedPicker) Pick(*picker.Request, []*endpoints.Endpoint) (*endpoints.Endpoint, error) {
	return nil, f.err
}

// writeImmediate sends a picker's own response. One that says nothing
// about an error (an error status without a body) gets the OpenAI error
// body every other error of the gateway has.
func writeImmediate(w http.ResponseWriter, im *extproc.Immediate, name string) int {
	if len(im.Body) == 0 && im.Status >= 400 {
		msg := "endpoint picker " + name + " answered " + strconv.Itoa(im.Status)
		if im.Details != "" {
			msg += ": " + im.Details
		}
		im.WriteHeaders(w.Header())
		typ := openai.TypeServer
		switch {
		case im.Status == http.StatusTooManyRequests:
			typ = openai.TypeOverloaded
		case im.Status < 500:
			typ = openai.TypeInvalidRequest
		}
		openai.WriteError(w, im.Status, typ, "endpoint_picker_response", msg)
		return im.Status
	}
	h := w.Header()
	im.WriteHeaders(h)
	h.Set("Content-Length", strconv.Itoa(len(im.Body)))
	w.WriteHeader(im.Status)
	_, _ = w.Write(im.Body)
	return im.Status
}

// writePickerError answers a request whose pool's picker failed closed.
func writePickerError(w http.ResponseWriter, e *extproc.Error) int {
	openai.WriteError(w, http.StatusServiceUnavailable, openai.TypeServer, "endpoint_picker_unavailable",
		"endpoint picker "+e.Picker+" failed ("+e.Reason+"); the pool fails closed")
	return http.StatusServiceUnavailable
}

// pickerResponse shows the picker of the attempt's pool the response
// headers (with the endpoint that served) before they are written, and
// applies its changes; it reports whether the picker replaced the
// response with its own, which has then been written.
func (ex *exchange) pickerResponse(code int, h http.Header) bool {
	im := ex.ext.Response(code, h, ex.served)
	if im == nil {
		return false
	}
	// The picker's response replaces the upstream's, headers and all but
	// the request id.
	rid := h["X-Request-Id"]
	clear(h)
	if rid != nil {
		h["X-Request-Id"] = rid
	}
	ex.discard, ex.committed = true, true
	ex.status = writeImmediate(ex.w, im, ex.ext.Picker().Name())
	return true
}
