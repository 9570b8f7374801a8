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
	ex.cors = c.cors
	route, r, body, bs, preq := c.route, c.r, c.body, c.bs, c.preq
	clientCtx := r.Context()
	if !c.deadline.IsZero() {
		ctx, cancel := context.WithDeadline(clientCtx, c.deadline)
		defer cancel()
		r = r.WithContext(ctx)
		c.r = r
	}
	attempts, retry := c.attempts(), route.Retry
	if body != nil {
		// Marks the body as the proxy's own, replayable copy (see
		// upstream.Proxy); the transport may also use it to resend.
		r.GetBody = func() (io.ReadCloser, error) { return body.NewReader(), nil }
	}

	var series *metrics.Series
	if bs.cfg.IsPool() || preq.Model != "" {
		series = m.metrics.Series(preq.Model, preq.TargetModel)
		n := 0
		if body != nil {
			n = body.Len()
		}
		series.Start(n)
		start, target := time.Now(), preq.TargetModel
		defer func() {
			res := metrics.Result{Start: start, FirstByte: ex.firstByte, End: time.Now(), Status: ex.status,
				ResponseBytes: ex.written, HasUsage: ex.insp.found, Input: ex.insp.usage.Input, Output: ex.insp.usage.Output,
				Streamed: ex.insp.mode == inspectSSE}
			// The outcome counts under the target that answered.
			final := series
			if preq.TargetModel != target {
				final = m.metrics.Series(preq.Model, preq.TargetModel)
			}
			series.DoneAs(final, res)
		}()
	}

	cands := bs.eps
	var tried []*endpoints.Endpoint
	sent := false
	for a := 1; ; a++ {
		ref, bs := c.ref, c.bs
		t0 := time.Now()
		ep, err := bs.picker.Pick(preq, cands)
		m.metrics.ObservePick(time.Since(t0))
		if err != nil {
			// Nothing was sent: another backendRef may take the attempt
			// (a pool's refusal to take more, 429, stands).
			if !isShed(err) && a < attempts && m.moveOn(c, ref) {
				cands = untried(c.bs.eps, tried)
				continue
			}
			if !sent {
				ex.status = writePickError(w, err, bs)
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
		ex.beginAttempt(retry, a >= attempts)
		if body != nil {
			r.Body = body.NewReader()
		}
		sent = true
		m.fireMirrors(c)
		m.attempt(ex, r, route.Timeouts.BackendRequest, bs, ep)
		if fb, ok := bs.picker.(picker.Feedback); ok {
			// Connect errors and 5xx count against the endpoint (ejection
			// with backoff after repeated failures); a client that went
			// away says nothing about it.
			if clientCtx.Err() == nil {
				fb.Done(ep, ex.err == nil && ex.swallowed < 500 && ex.status < 500)
			}
		}
		if ex.committed || clientCtx.Err() != nil || r.Context().Err() != nil || a >= attempts {
			break
		}
		if ex.err == nil && ex.swallowed == 0 {
			break // nothing to retry: the upstream answered without a status
		}
		m.logger.Debug("retrying", "route", route.Name, "backend", bs.cfg.Source, "endpoint", ep.Address, "attempt", a,
			"status", ex.swallowed, "err", ex.err)
		if retry.Backoff > 0 && !sleepCtx(r.Context(), retry.Backoff) {
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
	switch {
	case r.Context().Err() != nil || upstream.IsTimeout(ex.err):
		ex.status = http.StatusGatewayTimeout
		openai.WriteError(w, http.StatusGatewayTimeout, openai.TypeServer, "upstream_timeout",
			"upstream of "+bs.cfg.Source+" timed out")
	case ex.swallowed != 0:
		// A retryable answer was held back and no endpoint was left to
		// retry on: report the upstream's status.
		ex.status = ex.swallowed
		openai.WriteError(w, ex.swallowed, openai.TypeServer, "upstream_error",
			"upstream of "+bs.cfg.Source+" answered "+strconv.Itoa(ex.swallowed))
	default:
		ex.status = http.StatusBadGateway
		openai.WriteError(w, http.StatusBadGateway, openai.TypeServer, "upstream_error",
			"upstream of "+bs.cfg.Source+" failed")
	}
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

// attempt proxies one attempt to ep, bounded by perAttempt when set.
func (m *Pipeline) attempt(ex *exchange, r *http.Request, perAttempt time.Duration, bs *backendState, ep *endpoints.Endpoint) {
	if perAttempt > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), perAttempt)
		defer cancel()
		r = r.WithContext(ctx)
	}
	// Released when the response body (a whole SSE stream) has been
	// copied or the exchange failed — also when the copy panics to abort
	// the client connection.
	ep.Acquire()
	defer ep.Release()
	bs.proxies[ep].ServeHTTP(ex, r)
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
// the status it sent.
func writePickError(w http.ResponseWriter, err error, bs *backendState) int {
	if isShed(err) {
		openai.WriteError(w, http.StatusTooManyRequests, openai.TypeOverloaded, "overloaded",
			"pool "+bs.cfg.Source+" is saturated; request shed")
		return http.StatusTooManyRequests
	}
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
