package pipeline

import (
	"net/http"
	"sync"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/extproc"
)

// exchange is the ResponseWriter the upstream proxy writes to. It stands
// between the proxy and the client so that the handler can still retry an
// attempt (or answer a timeout) as long as nothing reached the client: a
// retryable status is swallowed instead of written, and upstream failures
// are recorded instead of answered. Once the status line is written the
// exchange is committed and every later byte goes straight through, so a
// request the client has seen any of is never repeated.
type exchange struct {
	w       http.ResponseWriter
	flusher http.Flusher

	// staged collects the upstream headers of an attempt that may still be
	// swallowed; nil when the attempt writes to w's headers directly.
	staged http.Header
	// retry is non-nil while a retryable status may be swallowed.
	retry *config.Retry
	// respFilters modify the response headers at commit.
	respFilters [2]*config.HeaderModifier
	// cors sets the CORS response headers at commit, over the backend's.
	cors corsRequest

	committed bool
	status    int
	swallowed int   // status of a swallowed attempt, 0 if none
	err       error // upstream failure of the attempt, nil if none
	firstByte time.Time
	// started tells the picker of the committed attempt its first byte.
	started firstByteNote
	written int64
	// inspect turns on the response inspector (model server responses).
	inspect bool
	insp    inspector
	// wd watches the current attempt (nil when unbounded); timedOut is
	// why it ended the attempt, if it did.
	wd       *watchdog
	timedOut *upstreamTimeout
	// cut is set when the committed response broke off before its end
	// (the stream was cut, or went silent past the idle timeout); cutErr
	// is the upstream client's reason, when it gave one.
	cut    bool
	cutErr error
	// ext is the external picker the attempt's endpoint came from, shown
	// the response headers with served, the endpoint's address, before
	// they are written; nil for attempts the proxy picked.
	ext    *extproc.Exchange
	served string
	// discard drops the upstream's bytes: the picker answered instead.
	discard bool
}

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

func newExchange(w http.ResponseWriter) *exchange {
	ex := exchangePool.Get().(*exchange)
	ex.w = w
	ex.flusher, _ = w.(http.Flusher)
	return ex
}

func (ex *exchange) release() {
	staged, insp := ex.staged, ex.insp
	*ex = exchange{}
	if staged != nil {
		clear(staged)
		ex.staged = staged
	}
	ex.insp = insp
	ex.insp.reset()
	exchangePool.Put(ex)
}

// beginAttempt prepares an attempt; last says no further attempt follows,
// so its response is always passed on.
func (ex *exchange) beginAttempt(retry *config.Retry, last bool) {
	ex.err, ex.swallowed, ex.timedOut, ex.cutErr = nil, 0, nil, nil
	if retry != nil && !last {
		ex.retry = retry
		if ex.staged == nil {
			ex.staged = http.Header{}
		} else {
			clear(ex.staged)
		}
		return
	}
	ex.retry = nil
	if ex.staged != nil {
		clear(ex.staged)
	}
}

// Header implements http.ResponseWriter.
func (ex *exchange) Header() http.Header {
	if ex.retry != nil && !ex.committed {
		return ex.staged
	}
	return ex.w.Header()
}

// WriteHeader implements http.ResponseWriter.
func (ex *exchange) WriteHeader(code int) {
	if ex.wd != nil {
		ex.wd.touch(code >= 200)
	}
	if ex.committed || ex.swallowed != 0 {
		return
	}
	if code < 200 {
		// Informational responses (103 Early Hints) pass through only
		// when they cannot be taken back.
		if ex.retry == nil {
			ex.w.WriteHeader(code)
		}
		return
	}
	if ex.retry != nil && ex.retry.Retries(code) {
		ex.swallowed = code
		return
	}
	h := ex.w.Header()
	if ex.retry != nil {
		for k, v := range ex.staged {
			h[k] = v
		}
	}
	if ex.ext != nil && ex.pickerResponse(code, h) {
		return
	}
	for _, f := range ex.respFilters {
		if f != nil {
			f.Apply(h)
		}
	}
	if ex.cors.cors != nil {
		ex.cors.cors.Actual(h, ex.cors.origin)
	}
	if ex.inspect {
		ex.insp.begin(h, code)
	}
	ex.committed, ex.status = true, code
	ex.w.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (ex *exchange) Write(p []byte) (int, error) {
	if !ex.committed {
		ex.WriteHeader(http.StatusOK)
	}
	if ex.wd != nil {
		ex.wd.touch(false)
	}
	if ex.swallowed != 0 || ex.discard {
		return len(p), nil
	}
	if ex.firstByte.IsZero() && len(p) > 0 {
		ex.firstByte = time.Now()
	}
	ex.started.see(ex, p)
	ex.written += int64(len(p))
	if ex.inspect && ex.insp.mode != inspectOff {
		return ex.insp.write(ex.w, p)
	}
	return ex.w.Write(p)
}

// finish completes a committed response: what the inspector held back.
func (ex *exchange) finish() {
	if ex.committed && !ex.discard && ex.inspect && ex.insp.mode != inspectOff {
		_ = ex.insp.finish(ex.w)
	}
}

// Flush implements http.Flusher so streamed events reach the client.
func (ex *exchange) Flush() {
	if ex.committed && ex.swallowed == 0 && !ex.discard && ex.flusher != nil {
		ex.flusher.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (ex *exchange) Unwrap() http.ResponseWriter { return ex.w }

// attemptStatus is the status the latest attempt's upstream answered: the
// one passed on, or the one swallowed for a retry; 0 for none.
func (ex *exchange) attemptStatus() int {
	if ex.swallowed != 0 {
		return ex.swallowed
	}
	if ex.committed {
		return ex.status
	}
	return 0
}

// UpstreamFailed implements upstream.FailureSink.
func (ex *exchange) UpstreamFailed(err error) bool {
	ex.err = err
	return true
}

// UpstreamCut implements upstream.CutSink.
func (ex *exchange) UpstreamCut(err error) { ex.cutErr = err }
