package pipeline

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/extproc"
	"github.com/infergate/infergate/dataplane/metrics"
	"github.com/infergate/infergate/dataplane/openai"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/dataplane/upstream"
)

// forward sends c's request (aimed at the weighted pick, see aim) to an
// endpoint of its backend, applying the rule's timeouts and retries. A
// retry happens only while the client has received nothing (see exchange),
// needs a replayable body (a buffered one, or none), and goes to another
// backendRef of the rule when one is left (see call.next), else to an
// endpoint of the same backend not tried yet when one is left.
func (m *Pipeline) forward(w http.ResponseWriter, c *call) {
	ex := newExchange(w)
	defer ex.release()
	if c.trace != nil {
		defer c.trace.answered(ex) // before release: ex holds the usage
	}
	// Counted under the backend the last attempt went to.
	defer func() { m.metrics.Route(c.route.Route, c.bs.cfg.Source).Count(ex.status, ex.cut) }()
	ex.cors = c.cors
	route, r, bs, preq := c.route, c.r, c.bs, c.preq
	defer endExternal(c)
	clientCtx := r.Context()
	if !c.deadline.IsZero() {
		ctx, cancel := context.WithDeadline(clientCtx, c.deadline)
		defer cancel()
		r = r.WithContext(ctx)
		c.r = r
	}
	attempts, retry := c.attempts(), route.Retry
	if c.body != nil {
		// Marks the body as the proxy's own, replayable copy (see
		// upstream.Proxy); the transport may also use it to resend. It
		// reads c.body: an endpoint picker may replace its content.
		r.GetBody = func() (io.ReadCloser, error) { return c.body.NewReader(), nil }
	}

	var series *metrics.Series
	if bs.cfg.IsPool() || preq.Model != "" {
		series = m.metrics.Series(preq.Model, preq.TargetModel)
		n := 0
		if c.body != nil {
			n = c.body.Len()
		}
		series.Start(n)
		start, target := time.Now(), preq.TargetModel
		defer func() {
			res := metrics.Result{Start: start, FirstByte: ex.firstByte, End: time.Now(), Status: ex.status,
				ResponseBytes: ex.written, HasUsage: ex.insp.found, Input: ex.insp.usage.Input, Output: ex.insp.usage.Output,
				HasCached: ex.insp.found && ex.insp.usage.CachedKnown, Cached: ex.insp.usage.Cached,
				Streamed: ex.insp.mode == inspectSSE, Cut: ex.cut}
			// The outcome counts under the target that answered.
			final := series
			if preq.TargetModel != target {
				final = m.metrics.Series(preq.Model, preq.TargetModel)
			}
			series.DoneAs(final, res)
		}()
	}

	// The picker that chose the final attempt learns how it went, once the
	// response is complete (usage arrives at its end).
	var observe pickOutcome
	defer func() { observe.report(ex) }()

	// left is what the route's retry policy allows after the first
	// attempt; notSent the extra attempts for failures that never reached
	// an endpoint, which any request may take.
	left, notSent := attempts-1, m.opts.NotSentRetries
	cands := bs.eps
	var tried []*endpoints.Endpoint
	var last *endpoints.Endpoint // the endpoint of the latest attempt
	for {
		ref, bs := c.ref, c.bs
		pk := bs.picker
		if bs.ext != nil {
			var answered bool
			if pk, answered = m.external(w, c, ex); answered {
				return
			}
		}
		t0 := time.Now()
		var slot *pickSlot
		if c.trace.recording() {
			slot = m.decisions.watch(preq) // the span shows the pick's cost terms
		}
		ep, err := pk.Pick(preq, cands)
		t1 := time.Now()
		if slot != nil {
			m.decisions.unwatch(preq)
		}
		m.metrics.ObservePick(t1.Sub(t0))
		c.trace.picked(t0, t1, bs.cfg.Source, len(cands), ep, err, slot.decision())
		if err != nil {
			// Nothing was sent: another backendRef may take the attempt
			// (a pool's refusal to take more, 429, stands).
			if !isShed(err) && (left > 0 || notSent > 0) && m.moveOn(c, ref) {
				if notSent > 0 {
					notSent--
				} else {
					left--
				}
				cands = untried(c.bs.eps, tried)
				continue
			}
			if last == nil {
				ex.status = m.writePickError(w, r, err, bs)
				return
			}
			break // report the previous attempt's failure
		}
		ex.respFilters = [2]*config.HeaderModifier{route.Filters.ResponseHeaders, ref.Filters.ResponseHeaders}
		// Model servers behind a plain Service answer OpenAI requests too:
		// their usage feeds the same per-model metrics. Only pools rewrite
		// the model, so only they need it restored.
		ex.inspect = bs.cfg.IsPool() || preq.Model != ""
		ex.insp.restore = bs.cfg.IsPool() && preq.TargetModel != preq.Model
		if ex.insp.restore {
			ex.insp.target, ex.insp.client = preq.TargetModel, preq.Model
		}
		ex.beginAttempt(retry, left == 0)
		ex.ext, ex.served = nil, ""
		if c.ext != nil && c.extFor == bs {
			ex.ext, ex.served = c.ext, ep.Address
		}
		if c.body != nil {
			r.Body = c.body.NewReader()
		}
		last = ep
		observe = outcomeFor(bs.picker, ep, preq)
		ex.started = firstByteFor(bs.picker, ep, preq)
		m.fireMirrors(c)
		span := c.trace.attempt(r, ep)
		m.attempt(ex, r, route, bs, ep, clientCtx)
		if ex.committed || clientCtx.Err() != nil || r.Context().Err() != nil {
			c.trace.attemptDone(span, ex.attemptStatus(), ex.err, "")
			break
		}
		var reason string
		switch {
		case isRequestError(ex.err):
			// The same on any endpoint: the client's to fix.
		case upstream.NotSent(ex.err) && notSent > 0:
			notSent--
			reason = metrics.RetryNotSent
		case left > 0 && ex.swallowed != 0:
			left--
			reason = metrics.RetryStatus
		case left > 0 && ex.err != nil:
			left--
			reason = metrics.RetryError
		}
		c.trace.attemptDone(span, ex.attemptStatus(), ex.err, reason)
		if reason == "" {
			break
		}
		m.metrics.Retry(reason)
		m.logger.Debug("retrying", "request_id", upstream.RequestID(r), "route", route.Name, "backend", bs.cfg.Source,
			"endpoint", ep.Address, "reason", reason, "status", ex.swallowed, "err", ex.err)
		if reason != metrics.RetryNotSent && retry.Backoff > 0 && !sleepCtx(r.Context(), retry.Backoff) {
			break
		}
		tried = append(tried, ep)
		m.moveOn(c, ref)
		cands = untried(c.bs.eps, tried)
	}
	bs = c.bs
	if ex.committed {
		ex.finish()
		return
	}
	if clientCtx.Err() != nil {
		return
	}
	m.writeUpstreamError(w, r, ex, bs, last)
}

// writeUpstreamError answers a request whose last attempt, at ep, failed
// before anything reached the client: 400 for a request that cannot be
// forwarded, 504 for a timeout, the held-back status of a retried answer,
// else 502. Every 5xx names ep (x-gateway-destination-endpoint-served)
// and is logged with the request id, the endpoint and the cause.
func (m *Pipeline) writeUpstreamError(w http.ResponseWriter, r *http.Request, ex *exchange, bs *backendState, ep *endpoints.Endpoint) {
	if isRequestError(ex.err) {
		ex.status = http.StatusBadRequest
		m.logger.Info("request cannot be forwarded", "request_id", upstream.RequestID(r), "backend", bs.cfg.Source, "err", ex.err)
		openai.WriteError(w, http.StatusBadRequest, openai.TypeInvalidRequest, "invalid_request", ex.err.Error())
		return
	}
	var status int
	var code, msg, cause string
	switch {
	case ex.timedOut != nil:
		status, code, cause = http.StatusGatewayTimeout, "upstream_timeout", ex.timedOut.Error()
		msg = "endpoint " + ep.Address + " of " + bs.cfg.Source + " timed out: " + cause
	case r.Context().Err() != nil || upstream.IsTimeout(ex.err):
		status, code, cause = http.StatusGatewayTimeout, "upstream_timeout", "route timeout"
		if ex.err != nil && r.Context().Err() == nil {
			cause = ex.err.Error()
		}
		msg = "upstream of " + bs.cfg.Source + " timed out"
	case ex.swallowed != 0:
		// A retryable answer was held back and no endpoint was left to
		// retry on: report the upstream's status.
		status, code = ex.swallowed, "upstream_error"
		cause = "endpoint answered " + strconv.Itoa(ex.swallowed)
		msg = "upstream of " + bs.cfg.Source + " answered " + strconv.Itoa(ex.swallowed)
	default:
		status, code, cause = http.StatusBadGateway, "upstream_error", "no response"
		if ex.err != nil {
			cause = ex.err.Error()
		}
		msg = "upstream of " + bs.cfg.Source + " failed"
	}
	ex.status = status
	w.Header()[upstream.ServedHeader] = ep.ServedHeader()
	m.logger.Warn("upstream request failed", "request_id", upstream.RequestID(r), "status", status, "backend", bs.cfg.Source,
		"endpoint", ep.Address, "cause", cause)
	openai.WriteError(w, status, openai.TypeServer, code, msg)
}

// isRequestError reports an attempt that failed for the request itself
// (a header that cannot be written), not for its endpoint.
func isRequestError(err error) bool {
	var re *upstream.RequestError
	return err != nil && errors.As(err, &re)
}

// moveOn aims c at the backendRef for the next attempt after one at ref
// failed, and reports whether that is another backendRef.
func (m *Pipeline) moveOn(c *call, ref *config.BackendRef) bool {
	next, bs := c.next()
	if next == ref {
		return false
	}
	m.aim(c, next, bs)
	return true
}

// attempt proxies one attempt to ep, bounded by the route's per-attempt
// timeout when set and, for pools, by the first-byte and stream-idle
// timeouts (see watchdog; the route's timeouts replace the first-byte
// one). It reports the outcome to the picker (ejection after repeated
// failures) unless the client went away or the request was at fault, and
// marks a response that started and then broke off (the upstream client
// aborts the client connection by panicking, which passes through here)
// as cut.
func (m *Pipeline) attempt(ex *exchange, r *http.Request, route *config.Route, bs *backendState, ep *endpoints.Endpoint, clientCtx context.Context) {
	ctx := r.Context()
	if d := route.Timeouts.BackendRequest; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if bs.cfg.IsPool() {
		firstByte := m.opts.FirstByteTimeout
		if route.Timeouts.Request > 0 || route.Timeouts.BackendRequest > 0 {
			firstByte = 0
		}
		wctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		if ex.wd = watch(max(firstByte, 0), max(m.opts.StreamIdleTimeout, 0), cancel); ex.wd != nil {
			ctx = wctx
		}
	}
	if ctx != r.Context() {
		r = r.WithContext(ctx)
	}
	// Released when the response body (a whole SSE stream) has been
	// copied or the exchange failed — also when the copy panics to abort
	// the client connection.
	start := time.Now()
	ep.Acquire(start)
	defer ep.Release()
	completed := false
	defer func() {
		if ex.wd != nil {
			ex.timedOut, ex.wd = ex.wd.stop(), nil
		}
		if !completed && ex.committed && clientCtx.Err() == nil {
			// Broken off by the upstream (or its silence), not by a
			// client that went away.
			ex.cut = true
		}
		m.attemptDone(ex, r, bs, ep, start, completed, clientCtx)
	}()
	bs.proxies[ep].ServeHTTP(ex, r)
	completed = true
}

// attemptDone records an attempt's outcome: the endpoint's time to first
// byte, the picker's feedback, and a log line for a stream cut short.
func (m *Pipeline) attemptDone(ex *exchange, r *http.Request, bs *backendState, ep *endpoints.Endpoint, start time.Time, completed bool, clientCtx context.Context) {
	if !ex.firstByte.IsZero() && ex.firstByte.After(start) {
		ep.ObserveFirstByte(ex.firstByte.Sub(start))
	}
	if clientCtx.Err() != nil || isRequestError(ex.err) {
		// A client that went away, or a request that cannot be sent,
		// says nothing about the endpoint.
		return
	}
	if ex.cut {
		cause := "response body copy failed"
		switch {
		case ex.timedOut != nil:
			cause = ex.timedOut.Error()
		case ex.cutErr != nil:
			cause = ex.cutErr.Error()
		}
		m.logger.Warn("upstream stream cut", "request_id", upstream.RequestID(r), "status", ex.status, "backend", bs.cfg.Source,
			"endpoint", ep.Address, "bytes", ex.written, "cause", cause)
	}
	if fb, ok := bs.picker.(picker.Feedback); ok {
		// Connect errors, 5xx, timeouts and cut streams count against the
		// endpoint (ejection with backoff after repeated failures).
		fb.Done(ep, completed && ex.err == nil && ex.timedOut == nil && ex.swallowed < 500 && ex.status < 500)
	}
}

// untried returns the endpoints of all not in tried, or all of them when
// every one was tried (a retry then may land on a tried endpoint).
func untried(all, tried []*endpoints.Endpoint) []*endpoints.Endpoint {
	out := make([]*endpoints.Endpoint, 0, len(all))
	for _, e := range all {
		if !slices.Contains(tried, e) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}

// writePickError answers a request no endpoint was picked for and returns
// the status it sent; a 503 is logged (there is no endpoint to name).
func (m *Pipeline) writePickError(w http.ResponseWriter, r *http.Request, err error, bs *backendState) int {
	var pe *extproc.Error
	if errors.As(err, &pe) {
		// The picker's own failure log is rate-limited and names no
		// request: each 503 is logged here like every other 5xx.
		m.logger.Warn("endpoint picker failed, pool fails closed", "request_id", upstream.RequestID(r),
			"status", http.StatusServiceUnavailable, "backend", bs.cfg.Source, "endpoint", "", "cause", pe.Error())
		return writePickerError(w, pe)
	}
	if isShed(err) {
		openai.WriteError(w, http.StatusTooManyRequests, openai.TypeOverloaded, "overloaded",
			"pool "+bs.cfg.Source+" is saturated; request shed")
		return http.StatusTooManyRequests
	}
	m.logger.Warn("no endpoint for request", "request_id", upstream.RequestID(r), "status", http.StatusServiceUnavailable,
		"backend", bs.cfg.Source, "endpoint", "", "cause", err.Error())
	openai.WriteError(w, http.StatusServiceUnavailable, openai.TypeServer, "no_healthy_upstream",
		"no ready endpoint for "+bs.cfg.Source)
	return http.StatusServiceUnavailable
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// isShed reports a picker refusal for lack of capacity (HTTP 429); any
// other picker error means no usable endpoint (503).
func isShed(err error) bool {
	return errors.Is(err, picker.ErrShed)
}

// pickOutcome is what a learning picker (picker.Observer) is told about
// the attempt it chose.
type pickOutcome struct {
	obs   picker.Observer
	ep    *endpoints.Endpoint
	preq  *picker.Request
	start time.Time
}

// outcomeFor starts the outcome of an attempt to ep (its obs is nil when
// p does not learn).
func outcomeFor(p picker.Picker, ep *endpoints.Endpoint, preq *picker.Request) pickOutcome {
	obs, ok := p.(picker.Observer)
	if !ok {
		return pickOutcome{}
	}
	return pickOutcome{obs: obs, ep: ep, preq: preq, start: time.Now()}
}

// firstByteNote is what a picker that wants to know when responses begin
// (picker.FirstByter) is told of the attempt it chose.
type firstByteNote struct {
	fb   picker.FirstByter
	ep   *endpoints.Endpoint
	preq *picker.Request
	// events counts the SSE events the response has ended so far, last
	// its last byte written: a streamed response's first token is in its
	// second event at the latest.
	events int
	last   byte
}

// firstByteFor starts the note of an attempt to ep (its fb is nil when p
// does not want it).
func firstByteFor(p picker.Picker, ep *endpoints.Endpoint, preq *picker.Request) firstByteNote {
	fb, ok := p.(picker.FirstByter)
	if !ok {
		return firstByteNote{}
	}
	return firstByteNote{fb: fb, ep: ep, preq: preq}
}

// see looks at p, the next bytes of ex's committed response, and tells
// the picker once the model server has produced a first token, if the
// response is a success (an error's body says nothing of that). A
// response that is not a stream has it with its first byte. A stream may
// not: a server can send an empty role chunk as soon as it admits the
// request, before prefill (modelsim does; vLLM sends it with the first
// token), and taking the prompt off the backlog then priced a replica
// mid-prefill as free (wall clock, unique prompts of mixed lengths, one
// proxy: TTFT p90 0.72 → 0.94 s). So a stream tells at the end of its
// second event: one decode step late where the first event carried the
// first token, never early.
func (n *firstByteNote) see(ex *exchange, p []byte) {
	if n.fb == nil || len(p) == 0 {
		return
	}
	if ex.status < 200 || ex.status >= 300 {
		n.fb = nil
		return
	}
	if ex.insp.mode == inspectSSE {
		for i, c := range p {
			prev := n.last
			if i > 0 {
				prev = p[i-1]
			}
			if c == '\n' && prev == '\n' {
				n.events++
			}
		}
		n.last = p[len(p)-1]
		if n.events < 2 {
			return
		}
	}
	fb := n.fb
	n.fb = nil
	fb.FirstByte(n.preq, n.ep, time.Now())
}

// report tells the picker how the attempt went: only successful, whole
// responses say anything about the endpoint's speed and cache.
func (o *pickOutcome) report(ex *exchange) {
	if o.obs == nil || ex.cut || ex.status < 200 || ex.status >= 300 || ex.err != nil {
		return
	}
	out := picker.Outcome{Total: time.Since(o.start), Streamed: ex.insp.mode == inspectSSE}
	if !ex.firstByte.IsZero() && ex.firstByte.After(o.start) {
		out.FirstByte = ex.firstByte.Sub(o.start)
	}
	if ex.insp.found {
		u := ex.insp.usage
		out.UsageKnown, out.Prompt, out.Output = true, u.Input, u.Output
		out.CachedKnown, out.Cached = u.CachedKnown, u.Cached
	}
	o.obs.Observe(o.preq, o.ep, out)
}
